"""Targets by device: every SM tileiras builds for is accepted and the rest refused with the list;
devices carry the SM count the tile rules assume; one SM holds one target per plan."""

import os
import shutil
import subprocess

import pytest

from compiler.errors import CompileError
from compiler.targets import ASSUMED_SM_COUNT, DEVICES, SUPPORTED_SMS, parse_gpus, parse_sms, target_for_sm


def test_a_bare_sm_assumes_its_reference_device():
    assert target_for_sm(90).sm_count == 132 and target_for_sm(90).device.name == "h100"
    assert target_for_sm(87).sm_count == 16 and target_for_sm(121).device.name == "gb10"
    assert target_for_sm(103).sm_count == ASSUMED_SM_COUNT and target_for_sm(103).device is None


def test_this_machines_gpu_is_named_when_a_device_matches():
    from compiler.targets import target_for_gpu
    assert target_for_gpu("NVIDIA H200", 90, 132).device.name == "h200"
    assert target_for_gpu("NVIDIA GeForce RTX 4090", 89, 128).device.name == "rtx-4090"
    assert target_for_gpu("Orin", 87, 8) == target_for_gpu("Orin", 87, 8) and target_for_gpu("Orin", 87, 8).device is None
    assert target_for_gpu("NVIDIA H100 PCIe", 90, 114).device.name == "h100-pcie"


def test_sm_counts_and_devices_parse():
    orin, h200 = parse_gpus("orin-nano,H200")
    assert (orin.sm, orin.sm_count, orin.device.bandwidth_gbs) == (87, 8, 68)
    assert (h200.sm, h200.sm_count) == (90, 132)
    (custom,) = parse_sms("89:24")
    assert (custom.sm, custom.sm_count, custom.device) == (89, 24, None)
    assert parse_sms("90, 121") == (target_for_sm(90), target_for_sm(121))
    assert custom.record() == {"sm_count": 24, "device": None, "title": None, "bandwidth_gbs": None}


@pytest.mark.parametrize("flag, text, message", [
    ("sm", "101", "supported: 80, 86, 87"),
    ("sm", "90:0", "between 1 and 1024"),
    ("sm", "ninety", "SM:SM count"),
    ("gpu", "rtx-9090", "unknown device 'rtx-9090'"),
    ("gpu", "orin-nano,orin-agx", "two targets for sm_87"),
])
def test_bad_targets_are_named(flag, text, message):
    with pytest.raises(CompileError, match=message):
        (parse_sms if flag == "sm" else parse_gpus)(text)


def test_every_device_is_on_a_supported_sm():
    assert all(device.sm in SUPPORTED_SMS and device.sm_count > 0 for device in DEVICES.values())


def test_supported_sms_are_what_tileiras_lists():
    nvidia = pytest.importorskip("nvidia")  # tileiras ships in nvidia-cuda-tileiras, beside the nvcc tools
    bundled = [os.path.join(path, "cu13", "bin", "tileiras") for path in nvidia.__path__]
    tileiras = shutil.which("tileiras") or next((path for path in bundled if os.path.exists(path)), None)
    if tileiras is None:
        pytest.skip("no tileiras here")
    listed = subprocess.run([tileiras, "--help"], capture_output=True, text=True, timeout=60).stdout
    found = sorted({int(line.split("=sm_")[1].split()[0]) for line in listed.splitlines() if "=sm_" in line})
    assert tuple(found) == SUPPORTED_SMS


def test_a_named_device_reaches_the_tile_rules_and_the_plan(tmp_path):
    from compiler.compile import CompileOptions, _resolve_targets, compile_plan
    from compiler.kernels import choose_tiles
    from compiler.tiles import SHIPPED
    options = CompileOptions(preset="tiny", dtype="bfloat16", max_seq=32, prefill_buckets=(8,),
                             targets=parse_gpus("orin-nano"))
    resolved, targets = _resolve_targets(options)
    assert resolved.sms == (87,) and resolved.tile_rules.sm_counts[87] == 8 and SHIPPED.sm_counts[87] == 16
    constants = {"dtype": "bfloat16", "epilogue": ["residual"], "weight_layout": "out_in"}
    shapes = {"x": (1, 2048), "out": (1, 2048)}  # a one-row [out, in] matmul: whole weight rows per CTA

    def rows_per_cta(sm, rules):
        return choose_tiles(sm, "matmul", constants, shapes, rules)["tile_n"]

    assert rows_per_cta(90, SHIPPED) == 8  # 256 CTAs fill the H100's 264 slots
    assert rows_per_cta(87, resolved.tile_rules) == 32  # 8 SMs: fewer, fatter CTAs
    body = compile_plan("llama", str(tmp_path / "p.plan"), CompileOptions(preset="tiny", max_seq=32,
                                                                        prefill_buckets=(8,)))
    assert body["devices"] == {}
