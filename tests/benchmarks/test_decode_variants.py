"""benchmarks/experimental/decode_variants.py: a variant is the shipped TileRules with the fields it
names replaced, and changes the tiles it should (CPU; tile choice and rendering only, no export)."""

import json

import pytest

from benchmarks.experimental.decode_variants import VARIANTS, _earlier_runs, _shipped_rules, variant
from compiler.cutile_export import render
from compiler.kernels import choose_tiles
from compiler.kernels.attention import decode_kv_splits
from compiler.tiles import SHIPPED

ATTENTION = {"dtype": "bfloat16", "phase": "decode", "head_dim": 128, "heads": 16, "kv_heads": 8, "seq": 1,
             "scale": 0.088, "rope": True, "norm_eps": 1e-6}
ATTENTION_SHAPES = {"k_cache": (1, 8, 256, 128)}


def _matmul(rules, dtype, inner, columns, epilogue):
    return choose_tiles(90, "matmul", {"dtype": dtype, "epilogue": list(epilogue)},
                        {"x": (1, inner), "out": (1, columns)}, rules)


def _attention_source(rules):
    return render("attention", {**ATTENTION, **choose_tiles(90, "attention", ATTENTION, ATTENTION_SHAPES, rules)})


def test_variants_replace_what_they_name_and_leave_the_shipped_rules_alone():
    assert variant("shipped") == SHIPPED
    assert _matmul(SHIPPED, "bfloat16", 3072, 1024, ["residual"])["tile_m"] == 1
    assert "@ct.kernel(occupancy=2)\ndef kernel" in _attention_source(SHIPPED)
    rules = variant("bf16-mma+attention-occupancy-1+attention-kv-64")
    assert _matmul(rules, "bfloat16", 3072, 1024, ["residual"]) == {
        "tile_m": 16, "tile_n": 32, "tile_k": 256, "weight_latency": 4}
    assert _matmul(rules, "float16", 3072, 768, ["residual"])["tile_m"] == 1  # float16 keeps the one-row path
    source = _attention_source(rules)
    assert "@ct.kernel\ndef kernel" in source and "TILE_KV = 64" in source
    source = _attention_source(variant("attention-kv-prefetch-2+attention-kv-128"))
    assert "early1_key_first = ct.load(" in source and "TILE_KV = 128" in source
    assert _matmul(variant("mma-decode"), "float16", 3072, 768, ["residual"])["tile_m"] == 16
    assert _matmul(variant("mma-decode"), "float32", 3072, 768, ["residual"])["tile_m"] == 1  # test plans keep it
    assert decode_kv_splits(variant("kv-splits-2"), 128, 1024, 16) == 2
    assert variant("out-in-weights").out_in_max_batch > 8 and variant("in-out-weights").out_in_max_batch == 0
    assert SHIPPED.decode_attention == {"occupancy": 2} and SHIPPED.kv_splits == 8


def test_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match="unknown variant 'fast'.*shipped"):
        variant("shipped+fast")
    assert set(VARIANTS) >= {"shipped", "bf16-mma", "kv-splits-1", "in-out-weights"}


def test_every_variant_changes_the_rules():
    for name in VARIANTS:
        assert (variant(name) == SHIPPED) == (name == "shipped"), name


def test_a_run_is_added_after_the_runs_already_written(tmp_path):
    path = tmp_path / "decode-variants-gpu.json"
    assert _earlier_runs(str(path)) == []
    earlier = [{"shipped": "main abc1234", "results": [{"variant": "shipped", "step_us": 300.0}]}]
    path.write_text(json.dumps({"device": "gpu", "runs": earlier}))
    assert _earlier_runs(str(path)) == earlier
    assert _shipped_rules()["kv_splits"] == SHIPPED.kv_splits and json.dumps(_shipped_rules())
