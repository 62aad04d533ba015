"""Tile choices and grids as pure functions of (rules, SM, constants, operand shapes by role): no
GPU, no export. compiler/tiles.py (TileRules) and compiler/kernels/<template>.py."""

import dataclasses

import pytest

from compiler.errors import CompileError
from compiler.kernels import choose_tiles, launch_grid, ordered, roles
from compiler.kernels.attention import decode_kv_splits
from compiler.kernels.matmul import in_out_one_row_fills
from compiler.cutile_export import render
from compiler.tiles import SHIPPED, TileRules, parse_overrides, shape_class

F16 = "float16"


def _matmul(dtype, rows, inner, columns, epilogue=("bias",), sm=90, rules=SHIPPED, **constants):
    constants = {"dtype": dtype, "epilogue": list(epilogue), **constants}
    out = columns // 2 if "silu_mul" in epilogue else columns
    return choose_tiles(sm, "matmul", constants, {"x": (rows, inner), "out": (rows, out)}, rules)


def test_shipped_rules_are_one_frozen_value_and_variants_are_replacements():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHIPPED.kv_splits = 2
    variant = dataclasses.replace(SHIPPED, kv_splits=2)
    assert variant.kv_splits == 2 and SHIPPED.kv_splits == 8 and variant.deep_k == SHIPPED.deep_k
    assert isinstance(variant, TileRules)


def test_overrides_parse_once_into_the_rules_and_name_a_bad_item():
    rules = parse_overrides(["kv_splits=2", "decode_attention={'occupancy': 1}", "in_out_one_row_fill=0"])
    assert (rules.kv_splits, rules.decode_attention, rules.in_out_one_row_fill) == (2, {"occupancy": 1}, 0)
    assert parse_overrides(None) == SHIPPED
    with pytest.raises(CompileError, match="'tile_sizes=3'.*FIELD one of"):
        parse_overrides(["tile_sizes=3"])
    with pytest.raises(CompileError, match="kv_splits takes a int, got str"):
        parse_overrides(["kv_splits='4'"])
    with pytest.raises(CompileError, match="not a Python literal"):
        parse_overrides(["kv_splits=four"])


def test_launch_shape_classes():
    assert shape_class(SHIPPED, 16) == "decode" and shape_class(SHIPPED, 17) == "prefill"


def test_launch_grids_cover_odd_shapes():
    assert launch_grid("matmul", {"tile_m": 16, "tile_n": 64}, {"x": (37, 48), "out": (37, 50257)}) == (3, 786, 1)
    attention = {"start_pos": (2,)}
    assert launch_grid("attention", {"phase": "prefill", "tile_q": 16, "heads": 3, "seq": 19}, attention) == (2, 3, 2)
    assert launch_grid("attention", {"phase": "decode", "heads": 3}, attention) == (2, 3, 1)
    assert launch_grid("attention", {"phase": "decode", "heads": 3, "kv_splits": 4}, attention) == (2, 3, 4)
    assert launch_grid("matmul", {"tile_m": 16, "tile_n": 32}, {"x": (2, 3000), "out": (2, 200)}) == (1, 7, 1)
    assert launch_grid("rmsnorm", {"rows": 8, "group": 16}, {"x": (37, 48)}) == (5, 3, 1)
    assert launch_grid("sample", {}, {"start_pos": (3,)}) == (3, 1, 1)
    assert launch_grid("embed", {"block": 64}, {"out": (10, 130)}) == (10, 3, 1)


def test_operand_roles_follow_the_constants_and_order_named_operands():
    assert roles("matmul", {"epilogue": ("bias", "residual"), "prologue": "rmsnorm", "row_stats": "rmsnorm"}) == (
        "x", "norm_stats", "weight", "bias", "residual", "out", "stats")
    assert roles("sample", {"argmax_partials": True})[-2:] == ("argmax_values", "argmax_ids")
    assert roles("attention", {"rope": True, "norm_eps": 1e-6, "kv_splits": 2})[-6:] == (
        "cos", "sin", "norm_weight", "k_norm_weight", "partials", "partial_lse")
    assert roles("rope", {"norm_eps": 1e-6, "q_heads": 2}) == (
        "x", "norm_weight", "k_norm_weight", "start_pos", "seq_lens", "cos", "sin", "out")
    assert ordered("add", {}, {"out": 3, "b": 2, "a": 1}) == [1, 2, 3]
    with pytest.raises(CompileError, match="template 'add' takes operands \\['a', 'b', 'out'\\], got \\['a', 'out'\\]"):
        ordered("add", {}, {"out": 3, "a": 1})
    with pytest.raises(CompileError, match="no kernel module for template 'conv'"):
        roles("conv", {})
    with pytest.raises(CompileError, match="takes 3 operands"):
        launch_grid("add", {"rows": 16, "block": 64}, [(2, 3), (2, 3)])


def test_one_row_decode_matmuls_take_the_no_mma_tile_where_it_was_measured_faster():
    assert _matmul(F16, 1, 3072, 768) == {"tile_m": 1, "tile_n": 32, "tile_k": 512, "weight_latency": 1, "occupancy": 2}
    assert _matmul(F16, 1, 768, 3072)["tile_k"] == 256
    assert _matmul("float32", 1, 3072, 768) == {"tile_m": 1, "tile_n": 32, "tile_k": 256, "weight_latency": 1}
    assert _matmul("bfloat16", 1, 3072, 768) == {
        "tile_m": 1, "tile_n": 32, "tile_k": 512, "weight_latency": 1, "occupancy": 2}
    assert _matmul(F16, 1, 1024, 2 * 3072, ("silu_mul",))["tile_m"] == 16  # [K, N] gate+up keeps MMA tiles
    assert _matmul(F16, 2, 3072, 768) == {"tile_m": 16, "tile_n": 32, "tile_k": 256, "weight_latency": 4}
    assert _matmul(F16, 2, 768, 768)["weight_latency"] == 2  # below deep_k
    assert _matmul(F16, 1, 768, 50257) == {"tile_m": 16, "tile_n": 128, "tile_k": 128, "occupancy": 2}  # LM head
    # a 7B's batch-8 gate+up (18944 outputs): decode MMA tiles; wide ones spilled (H200: 104 -> 88 us a layer)
    assert _matmul("bfloat16", 8, 3584, 2 * 18944, ("silu_mul",)) == {
        "tile_m": 16, "tile_n": 32, "tile_k": 256, "weight_latency": 4}
    assert launch_grid("matmul", _matmul(F16, 1, 3072, 768), {"x": (1, 3072), "out": (1, 768)}) == (1, 24, 1)
    mma = dataclasses.replace(SHIPPED, one_row_hints={"float32": {}})  # 16-bit one-row rows take MMA tiles
    assert _matmul(F16, 1, 3072, 768, rules=mma)["tile_m"] == 16
    assert _matmul("float32", 1, 3072, 768, rules=mma)["tile_m"] == 1


def test_one_row_out_in_matmuls_step_deeper_from_deep_k_where_their_ctas_fill_the_sms():
    def tiles(inner, columns, sm=90, epilogue=("residual",)):
        return _matmul("bfloat16", 1, inner, columns, epilogue, sm=sm, weight_layout="out_in")

    assert tiles(3072, 1024) == {"tile_m": 1, "tile_n": 8, "tile_k": 1024, "weight_latency": 1, "occupancy": 2}
    assert tiles(2048, 1024)["tile_k"] == 1024  # qwen3-0.6b down_proj and o_proj: 128 CTAs on 132 SMs
    assert tiles(1024, 1024)["tile_k"] == 512   # below deep_k
    assert tiles(3072, 768)["tile_k"] == 512    # gpt2 mlp c_proj: 96 CTAs
    assert tiles(3072, 768, sm=121)["tile_k"] == 1024  # 96 CTAs fill 48 SMs
    assert tiles(1024, 2 * 3072, epilogue=("silu_mul",))["tile_k"] == 256  # 16-row gate+up tiles
    assert tiles(1024, 2 * 3072, epilogue=("silu_mul",))["tile_n"] == 16
    assert launch_grid("matmul", tiles(3072, 1024), {"x": (1, 3072), "out": (1, 1024)}) == (1, 128, 1)
    # a 7B's gate+up (18944 outputs, wider than LM-head-wide): whole weight rows, not wide MMA tiles
    # (Qwen2-7B decoder on the H200: 99 -> 72 us a layer)
    assert tiles(3584, 2 * 18944, epilogue=("silu_mul",)) == {
        "tile_m": 1, "tile_n": 32, "tile_k": 256, "weight_latency": 1, "occupancy": 2}


def test_one_row_int4_steps_of_two_groups_from_deep_k_take_group_accumulators():
    def tiles(inner, columns, group=128, epilogue=("silu_mul",), rows=1):
        return _matmul("bfloat16", rows, inner, columns, epilogue, weight_layout="out_in", weight_quant="int4",
                       quant_group=group)

    llama_gate_up = tiles(2048, 2 * 8192)  # 32 rows a CTA, 256 deep: two groups a step
    assert (llama_gate_up["tile_k"], llama_gate_up["int4_acc"]) == (256, "group")
    assert tiles(2048, 3072, epilogue=())["int4_acc"] == "group"  # llama-3.2-1b q/k/v
    assert "int4_acc" not in tiles(1024, 4096, epilogue=())        # qwen3-0.6b q/k/v: below deep_k (slower)
    assert "int4_acc" not in tiles(2048, 2048, epilogue=("residual",))  # o: 1024 deep, eight groups a step
    assert "int4_acc" not in tiles(2048, 2 * 8192, group=32)       # eight groups a step
    assert "int4_acc" not in tiles(2048, 2 * 8192, rows=2)         # MMA tiles
    source = render("matmul", {"dtype": "bfloat16", "epilogue": ["silu_mul"], "out_dtype": "bfloat16",
                               "weight_layout": "out_in", "weight_quant": "int4", "quant_group": 128, **llama_gate_up})
    assert source.count("shape=(TILE_N, QUANT_GROUP // 2)") == 2 * 2 * 3  # gate, up x 2 groups x (2 prefetched + loop)
    assert "gate = ct.full((TILE_N, QUANT_GROUP)" in source


def test_one_row_matmuls_storing_row_statistics_store_one_group_a_cta():
    """One-row CTAs storing two or four 8-column statistics groups hung on the H200 (one ran)."""
    stats = {"row_stats": "rmsnorm", "stats_group": 8}
    out_in = _matmul("bfloat16", 1, 2048, 4096, ("residual",), weight_layout="out_in", **stats)
    assert out_in["tile_m"] == 1 and out_in["tile_n"] == 8  # 512 CTAs rather than 256 of 16 rows
    assert _matmul("bfloat16", 1, 2048, 4096, ("residual",), weight_layout="out_in")["tile_n"] == 16
    assert _matmul("bfloat16", 1, 2048, 1000, ("residual",), **stats)["tile_m"] == 16  # [K, N]: MMA tiles
    assert _matmul("bfloat16", 1, 2048, 1000, ("residual",))["tile_m"] == 1
    small = _matmul("bfloat16", 1, 2048, 2048, ("residual",), sm=87, weight_layout="out_in", **stats)
    assert small["tile_n"] == 8  # an 16-SM Orin would otherwise take 32 rows a CTA


def test_prefill_matmuls_take_the_candidate_filling_the_waves():
    assert _matmul(F16, 1024, 768, 2304) == {"tile_m": 128, "tile_n": 128, "tile_k": 64, "occupancy": 2}
    assert _matmul(F16, 1024, 768, 768)["tile_m"] == 64  # the N=768 projections: 64x128
    assert "occupancy" not in _matmul("float32", 1024, 768, 2304)  # TF32 keeps one CTA per SM
    assert _matmul("float32", 1024, 768, 2304)["tile_k"] == 32  # fp32 tiles are twice the bytes


def test_prefill_gate_up_takes_tiles_that_hold_two_accumulators_without_spilling():
    gate_up = dict(epilogue=("silu_mul",), sm=90)
    assert _matmul("bfloat16", 2048, 3584, 2 * 18944, **gate_up) == {  # the 7B's: 4.1x faster than 128x128
        "tile_m": 128, "tile_n": 64, "tile_k": 64, "occupancy": 2}
    assert _matmul("bfloat16", 2048, 3584, 2 * 18944)["tile_n"] == 128  # other linears keep 128x128
    assert _matmul("bfloat16", 64, 3584, 2 * 18944, **gate_up)["tile_m"] == 64  # a 64-row chunk: no padded rows


def test_row_statistics_group_width_comes_from_one_constant():
    stats = {"dtype": F16, "epilogue": ["residual"], "row_stats": "rmsnorm", "prologue": "rmsnorm", "stats_group": 32}
    shapes = [(2, 64), (2, 2), (64, 96), (2, 96), (2, 96), (2, 3)]
    assert "stats_group" not in choose_tiles(90, "matmul", stats, shapes)  # lowering names it, tiles keep it
    assert choose_tiles(90, "matmul", stats, shapes)["stats_block"] == 2
    with pytest.raises(ValueError, match="multiple of 64"):  # statistics groups must tile the output tile
        choose_tiles(90, "matmul", {**stats, "stats_group": 64}, [(2, 64), (2, 1), (64, 96), (2, 96), (2, 96), (2, 2)])
    embed = {"dtype": F16, "positions": False, "row_stats": "layernorm", "stats_group": 32}
    tiles = choose_tiles(90, "embed", embed, [(2, 5), (2,), (300, 48), (10, 48), (10, 4)])
    assert "stats_group" not in tiles and tiles == {"block": 64, "stats_half": 2}
    source = render("matmul", {**stats, "tile_m": 16, "tile_n": 32, "tile_k": 64, "stats_block": 4, "eps": 1e-6,
                               "stats_group": 16})
    assert "GROUP = 16" in source and "ct.cdiv(x.shape[1], 16)" in source


def test_row_kernels_cover_odd_widths_with_power_of_two_blocks():
    assert choose_tiles(90, "layernorm", {}, {"x": (37, 48)}) == {"block": 64, "rows": 16}
    assert choose_tiles(90, "layernorm", {}, {"x": (37, 1024)}) == {"block": 1024, "rows": 8}
    assert choose_tiles(90, "add_norm", {"norm": "rmsnorm"}, {"a": (37, 3584)}) == {"block": 4096, "rows": 2}
    assert choose_tiles(90, "rmsnorm", {"group": 128}, {"x": (37, 2048)}) == {"block": 128, "rows": 16}
    assert choose_tiles(90, "gelu", {}, {"out": (37, 3584)}) == {"block": 256, "rows": 16}
    assert choose_tiles(90, "rope", {"head_dim": 80, "seq": 48}, {}) == {"half_block": 64, "tile_rows": 16}
    assert choose_tiles(90, "rope", {"head_dim": 128, "seq": 512}, {})["tile_rows"] == 32
    assert choose_tiles(90, "rope", {"head_dim": 128, "seq": 19}, {})["tile_rows"] == 1
    assert choose_tiles(90, "attention_merge", {"head_dim": 8}, {}) == {"block_d": 16}
    sample = choose_tiles(90, "sample", {"argmax_partials": True},
                          {"logits": (2, 50257), "history": (2, 64), "eos": (8,), "argmax_values": (2, 1571)})
    assert sample == {"block": 4096, "history_block": 64, "eos_slots": 8, "argmax_block": 2048}


def test_attention_tiles_by_phase():
    prefill = {"phase": "prefill", "dtype": F16, "head_dim": 64, "seq": 128}
    assert choose_tiles(90, "attention", prefill, {}) == {"block_d": 64, "tile_q": 128, "tile_kv": 64}
    assert choose_tiles(90, "attention", {**prefill, "dtype": "float32"}, {})["tile_q"] == 64
    assert choose_tiles(90, "attention", {**prefill, "seq": 5}, {})["tile_q"] == 16
    wider = dataclasses.replace(SHIPPED, prefill_attention={64: (64, 128), 128: (64, 64)})
    assert choose_tiles(90, "attention", prefill, {}, wider) == {"block_d": 64, "tile_q": 64, "tile_kv": 128}
    assert choose_tiles(90, "attention", {**prefill, "head_dim": 256}, {})["tile_q"] == 64  # past the widest entry
    decode = {"phase": "decode", "dtype": F16, "head_dim": 128}
    assert choose_tiles(90, "attention", decode, {"k_cache": (1, 8, 256, 128)}) == {
        "block_d": 128, "tile_kv": 64, "occupancy": 2}
    prefetch = dataclasses.replace(SHIPPED, decode_attention={"tile_kv": 128, "kv_prefetch": 4})
    assert choose_tiles(90, "attention", decode, {"k_cache": (1, 8, 256, 128)}, prefetch)["kv_prefetch"] == 2


def test_decode_attention_splits_long_caches_within_the_cta_budget():
    assert decode_kv_splits(SHIPPED, 128, 256, 16) == 1      # 4 tiles of 64 keys: below kv_split_min_tiles
    assert decode_kv_splits(SHIPPED, 128, 1024, 16) == 8     # 16 tiles, 16 heads
    assert decode_kv_splits(SHIPPED, 64, 1024, 8 * 12) == 2  # batch 8: within 256 CTAs
    assert decode_kv_splits(SHIPPED, 128, 576, 32) == 8      # 9 tiles: a power of two
    assert decode_kv_splits(dataclasses.replace(SHIPPED, kv_splits=1), 128, 1024, 16) == 1


def test_in_out_one_row_tiles_fill_the_sms_from_enough_columns():
    assert not in_out_one_row_fills(SHIPPED, 90, 3072) and in_out_one_row_fills(SHIPPED, 90, 4096)
    assert in_out_one_row_fills(SHIPPED, 90, 50257)  # LM heads always count as filling them
    assert in_out_one_row_fills(SHIPPED, 121, 3072)  # 96 CTAs cover GB10's 48 SMs


def test_cgc_compile_names_a_bad_tile_override(tmp_path, capsys):
    from compiler.cli import main
    output = tmp_path / "x.plan"
    assert main(["compile", "gpt2", "--preset", "nano", "--sm", "none", "--tiles", "kv_split=2",
                 "-o", str(output)]) == 2
    assert "--tiles 'kv_split=2': expected FIELD=VALUE" in capsys.readouterr().err and not output.exists()


def test_compile_options_carry_the_tile_rules_to_lowering(tmp_path):
    from compiler.compile import CompileOptions, compile_plan

    def splits(rules):
        options = CompileOptions(preset="tiny", overrides={"num_hidden_layers": 1}, max_seq=1024,
                                 prefill_buckets=(8,), tile_rules=rules)
        body = compile_plan("qwen3", str(tmp_path / "q.plan"), options)
        return {k["constants"].get("kv_splits") for k in body["kernels"] if k["template"] == "attention"}

    assert splits(SHIPPED) == {None, 8} and splits(dataclasses.replace(SHIPPED, kv_splits=2)) == {None, 2}
