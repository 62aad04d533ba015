"""Kernel specialization exports real cubins for every target SM, on a machine with no GPU."""

import time

import pytest

pytest.importorskip("cuda.tile")

from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from compiler.cutile_export import block_threads, symbols  # noqa: E402
from compiler.kernels import launch_grid  # noqa: E402
from runtime.plan import load_plan  # noqa: E402

TARGETS = (80, 90, 100, 120, 121)


def _options(cache_dir, sms):
    return CompileOptions(preset="tiny", overrides={"num_hidden_layers": 1}, dtype="float16", max_batch=2,
                          max_seq=32, prefill_buckets=(16,), sms=sms, cache_dir=str(cache_dir))


@pytest.fixture(scope="module")
def multi_target(tmp_path_factory):
    directory = tmp_path_factory.mktemp("multi")
    started = time.perf_counter()
    compile_plan("qwen3", str(directory / "q.plan"), _options(directory / "cache", TARGETS))
    return load_plan(str(directory / "q.plan")), time.perf_counter() - started, directory


@pytest.mark.slow
def test_every_launch_has_a_cubin_per_target(multi_target):
    plan, _, _ = multi_target
    assert plan["targets"] == list(TARGETS)
    for program in plan["programs"].values():
        for launch in program["launches"]:
            assert set(launch["targets"]) == {f"sm_{sm}" for sm in TARGETS}
            generic = plan["kernels"][launch["kernel"]]
            for target, entry in launch["targets"].items():
                spec = plan["kernels"][entry["kernel"]]
                assert f"sm_{spec['sm']}" == target and spec["template"] == generic["template"]
                shapes = [arg["shape"] for arg in launch["args"]]
                assert entry["grid"] == list(launch_grid(spec["template"], spec["constants"], shapes))
                assert all(g >= 1 for g in entry["grid"])


@pytest.mark.slow
def test_cubins_carry_their_entry_symbol_and_block_size(multi_target):
    plan, _, _ = multi_target
    specialized = [k for k in plan["kernels"] if k.get("sm") is not None]
    assert {k["sm"] for k in specialized} == set(TARGETS)
    for kernel in specialized:
        (cubin,) = kernel["cubins"].values()
        image = cubin["image"]
        assert image[:4] == b"\x7fELF"
        assert cubin["symbol"] in symbols(image)
        assert cubin["block"][0] == block_threads(image, cubin["symbol"])
        assert cubin["block"][0] % 32 == 0 and cubin["block"][1:] == [1, 1]


@pytest.mark.slow
def test_warm_cache_recompiles_in_seconds_with_identical_cubins(multi_target):
    plan, cold_seconds, directory = multi_target
    started = time.perf_counter()
    compile_plan("qwen3", str(directory / "again.plan"), _options(directory / "cache", TARGETS))
    warm_seconds = time.perf_counter() - started
    again = load_plan(str(directory / "again.plan"))
    images = [tuple(c["image"] for c in k["cubins"].values()) for k in plan["kernels"]]
    assert images == [tuple(c["image"] for c in k["cubins"].values()) for k in again["kernels"]]
    assert warm_seconds < cold_seconds / 3


def test_compile_names_the_kernels_that_spill(tmp_path):
    from compiler.cutile_export import export_cubin
    from compiler.specialize import _spilling
    from tests.compiler.test_kernel_cache import ADD
    from tests.runtime.test_cubin_info import INT4_GATE_UP
    specs = [{"template": template, "cubins": {"sm_90": {"image": export_cubin(template, constants, operands, 90,
                                                                                str(tmp_path)).cubin}}}
             for template, constants, operands in (ADD, INT4_GATE_UP)]
    assert _spilling(specs) == ["matmul sm_90"]  # the int4 gate+up spills, the add does not
