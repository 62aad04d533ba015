"""benchmarks/decode_variants.py: each variant changes the tiles or kernels it names while it is
active and nothing after (CPU; rendering only, no export)."""

import json

import pytest

from benchmarks.decode_variants import VARIANTS, variant
from compiler import cutile_export, tiles
from compiler.cutile_export import render
from compiler.tiles import choose_tiles

ATTENTION = {"dtype": "bfloat16", "phase": "decode", "head_dim": 128, "heads": 16, "kv_heads": 8, "seq": 1,
             "scale": 0.088, "rope": True, "norm_eps": 1e-6}
ATTENTION_SHAPES = [(1, 2048), (1, 1024), (1, 1024), (1, 8, 256, 128), (1, 8, 256, 128), (1,), (1,), (256, 64),
                    (256, 64), (128,), (128,), (1, 2048)]


def _matmul(dtype, inner, columns, epilogue):
    return choose_tiles(90, "matmul", {"dtype": dtype, "epilogue": list(epilogue)},
                        [(1, inner), (inner, columns), (1, columns)])


def _attention_source():
    return render("attention", {**ATTENTION, **choose_tiles(90, "attention", ATTENTION, ATTENTION_SHAPES)})


def test_variants_change_what_they_name_and_restore_it():
    shipped = (_matmul("bfloat16", 3072, 1024, ["residual"]), _matmul("float16", 1024, 6144, ["silu_mul"]),
               _matmul("float16", 3072, 768, ["residual"]), _attention_source())
    assert shipped[0]["tile_m"] == 1 and shipped[1]["tile_m"] == 16 and shipped[2]["tile_m"] == 1
    assert "@ct.kernel(occupancy=2)\ndef kernel" in shipped[3]
    with variant("bf16-mma+gate-up-gemv+attention-occupancy-1+attention-kv-32"):
        assert _matmul("bfloat16", 3072, 1024, ["residual"]) == {
            "tile_m": 16, "tile_n": 32, "tile_k": 256, "weight_latency": 4}
        assert _matmul("float16", 1024, 6144, ["silu_mul"])["tile_k"] == 128
        source = _attention_source()
        assert "@ct.kernel\ndef kernel" in source and "TILE_KV = 32" in source
    with variant("attention-kv-prefetch-2+attention-kv-128"):
        source = _attention_source()
        assert "early1_key_first = ct.load(" in source and "index=(b, kv_head, 1, 0)" in source
        assert "range(2, ct.cdiv(start, TILE_KV))" in source and "TILE_KV = 128" in source
    with variant("attention-kv-prefetch-4+attention-kv-128"):  # the 256-row cache holds 2 tiles
        assert "range(2, ct.cdiv(start, TILE_KV))" in _attention_source()
    with variant("prefetch-4"):  # no more steps than K has
        assert _matmul("float16", 768, 768, ["residual"])["prefetch"] == 3
        assert _matmul("bfloat16", 3072, 1024, ["residual"])["prefetch"] == 4
    with variant("bf16-mma+mma-occupancy-2"):
        assert _matmul("bfloat16", 3072, 1024, ["residual"]) == {
            "tile_m": 16, "tile_n": 32, "tile_k": 256, "weight_latency": 4, "occupancy": 2}
    with variant("mma-decode"):
        assert _matmul("float16", 3072, 768, ["residual"])["tile_m"] == 16
        assert _matmul("float32", 3072, 768, ["residual"])["tile_m"] == 1  # test plans keep the path
    from compiler.passes import store_out_in
    gate_up = type("Op", (), {"attrs": {"epilogue": ("silu_mul",)}})()
    assert store_out_in.wants_out_in(gate_up, (1024, 6144))
    with variant("in-out-weights"):
        assert not store_out_in.wants_out_in(gate_up, (1024, 6144))
    assert store_out_in.wants_out_in(gate_up, (1024, 6144))
    with variant("out-in-weights"):
        assert store_out_in.MAX_BATCH > 8
    assert store_out_in.MAX_BATCH == 1
    norm = {"dtype": "float16", "group": 64, "block": 64, "rows": 4, "eps": 1e-6}
    for name, offset in (("shipped", 1), ("early-trigger", -1)):
        with variant(name):
            lines = [line.strip() for line in cutile_export.render("rmsnorm", norm).splitlines()]
            wait = lines.index("ct.grid_dependency_control_wait()")
            assert lines[wait + offset] == "ct.grid_dependency_control_launch_dependents()"
            assert lines.count("ct.grid_dependency_control_launch_dependents()") == 1
    trigger = "ct.grid_dependency_control_launch_dependents()"
    with variant("attention-exit-trigger+attention-warps-4"):
        assert trigger not in cutile_export.render("attention", {**ATTENTION, **choose_tiles(
            90, "attention", ATTENTION, ATTENTION_SHAPES)})
        assert trigger in cutile_export.render("rmsnorm", norm)
        assert "@ct.kernel(occupancy=2, num_worker_warps=4)\ndef kernel" in _attention_source()
    with variant("rope-kernel"):
        from compiler import lower
        assert lower._ProgramLowering._fused_ropes(None) == {}
    assert lower._ProgramLowering._fused_ropes.__name__ == "_fused_ropes"
    assert (_matmul("bfloat16", 3072, 1024, ["residual"]), _matmul("float16", 1024, 6144, ["silu_mul"]),
            _matmul("float16", 3072, 768, ["residual"]), _attention_source()) == shipped
    assert cutile_export.render is render and tiles.DECODE_ATTENTION == {"occupancy": 2}


def test_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match="unknown variant 'fast'.*shipped"):
        with variant("shipped+fast"):
            pass
    assert set(VARIANTS) >= {"shipped", "bf16-mma", "gate-up-gemv", "early-trigger"}


def test_a_run_is_added_after_the_runs_already_written(tmp_path):
    from benchmarks.decode_variants import _earlier_runs
    path = tmp_path / "decode-variants-gpu.json"
    assert _earlier_runs(str(path)) == []
    earlier = [{"shipped": "main abc1234", "results": [{"variant": "shipped", "step_us": 300.0}]}]
    path.write_text(json.dumps({"device": "gpu", "runs": earlier}))
    assert _earlier_runs(str(path)) == earlier


def test_profile_plan_names_per_layer_ops_without_their_layer():
    from benchmarks.profile_plan import _role
    assert [_role(op) for op in ("l0.qkv_proj", "l27.o_proj", "embed", "lm_head", "ln_f.x")] == [
        "qkv_proj", "o_proj", "embed", "lm_head", "ln_f.x"]


def test_profile_plan_timeline_takes_the_middle_run_and_what_each_kernel_adds():
    from benchmarks.profile_plan import timeline_rows
    ops, templates = ["embed", "l0.qkv", "l0.attention"], ["embed", "matmul", "attention"]
    # two runs; each kernel starts 1 us before the previous one ends (programmatic launches)
    events, clock = [], 0.0
    for _ in range(2):
        for duration in (2.0, 5.0, 4.0):
            start = clock - 1.0
            events.append({"ts": start, "dur": duration})
            clock = start + duration
    rows = timeline_rows(events[::-1], ops, templates, reps=2)  # any order: sorted by start
    assert [row[:2] for row in rows] == list(zip(ops, templates))
    assert [row[2:] for row in rows] == [(2.0, -1.0, 1.0), (5.0, -1.0, 4.0), (4.0, -1.0, 3.0)]
    with pytest.raises(RuntimeError, match="recorded 5 kernels, not 2 x 3"):
        timeline_rows(events[:5], ops, templates, reps=2)
