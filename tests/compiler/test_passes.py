"""Each pass rewrites what it should and keeps the forward's logits (NumPy executor)."""

import numpy as np
import pytest

from compiler.passes import (concat_gate_up, concat_qkv, fuse_add_norm, fuse_epilogues, fuse_norm_rope,
                             hoist_transposes, infer_shapes, merge_qk_rope, fold_norms,
                             store_out_in)
from compiler import lower, tiles
from compiler.weights import RandomWeights, materialize
from tests.conftest import small_graph
from tests.graph_exec import run_graph

TOKENS = [5, 17, 3, 250, 42, 7]


def _kinds(graph):
    return [op.kind for op in graph.ops]


def _same_logits(before, after):
    reference, _ = run_graph(before, TOKENS)
    result, _ = run_graph(after, TOKENS)
    error = np.abs(result - reference).max() / np.abs(reference).max()
    assert error < 1e-5, error


def test_hoist_transposes_stores_in_out_weights(family):
    graph = infer_shapes.run(small_graph(family))
    hoisted = hoist_transposes.run(graph)
    linears = [op for op in hoisted.ops if op.kind == "linear"]
    assert all(op.attrs["layout"] == "in_out" for op in linears)
    transposed = [w for w in hoisted.weights.values() if w.recipe[0] == "transpose"]
    expected = sum(op.attrs.get("layout") == "out_in" for op in graph.ops if op.kind == "linear")
    assert len(transposed) == expected > 0
    values = materialize(hoisted.weights, RandomWeights(0))
    for weight in transposed:
        np.testing.assert_array_equal(values[weight.name], values[weight.recipe[1]].T)
    run_graph(hoisted, TOKENS)  # lowers and runs


def test_lowering_reads_out_in_weights_too():
    graph = infer_shapes.run(small_graph("llama"))
    _same_logits(hoist_transposes.run(graph), graph)


def test_store_out_in_picks_narrow_and_gate_up_linears(family):
    graph = infer_shapes.run(small_graph(family))
    for compiler_pass in (hoist_transposes, concat_qkv, concat_gate_up, fuse_epilogues, fold_norms):
        graph = compiler_pass.run(graph)
    stored = store_out_in.run(graph)
    values = materialize(stored.weights, RandomWeights(0))
    picked = 0
    for before, after in zip(graph.ops, stored.ops):
        if before.kind != "linear":
            continue
        in_features, features = graph.weights[before.weights["weight"]].shape
        narrow = features <= in_features or "silu_mul" in before.attrs.get("epilogue", ())
        assert after.attrs["layout"] == ("out_in" if narrow else "in_out"), after.name
        if narrow:
            picked += 1
            source = materialize(graph.weights, RandomWeights(0), [before.weights["weight"]])
            np.testing.assert_array_equal(values[after.weights["weight"]], source[before.weights["weight"]].T)
    layers = len({op.layer for op in graph.ops if op.layer is not None})
    assert layers and picked >= 2 * layers  # attention output and MLP down, at least
    # a transposed checkpoint tensor is read as it is, not transposed twice
    assert not any(name.endswith("^T^T") for name in stored.weights)
    _same_logits(graph, infer_shapes.run(stored))


def test_store_out_in_also_picks_linears_too_narrow_to_fill_the_target_sms(family):
    graph = infer_shapes.run(small_graph(family))
    for compiler_pass in (hoist_transposes, concat_qkv, concat_gate_up, fuse_epilogues, fold_norms):
        graph = compiler_pass.run(graph)
    untargeted = store_out_in.run(graph)
    targeted = store_out_in.run(graph, sms=(90,))  # small graphs: every linear is too narrow
    wide = {op.name for op in untargeted.ops if op.kind == "linear" and op.attrs["layout"] == "in_out"}
    assert len(wide) > 1  # qkv, up projections and the LM head
    logits = graph.outputs["logits"]
    for before, after in zip(graph.ops, targeted.ops):
        if before.kind == "linear":  # the LM head stays as it was
            expected = untargeted.ops[graph.ops.index(before)].attrs["layout"] if logits in before.outputs else "out_in"
            assert after.attrs["layout"] == expected, after.name
    _same_logits(graph, infer_shapes.run(targeted))
    # at real widths the H100 rule keeps qwen3-0.6b's qkv (128 CTAs of 32 columns) [in, out]
    assert not tiles.in_out_gemv_fills(90, 3072) and tiles.in_out_gemv_fills(90, 4096)


def test_store_out_in_keeps_in_out_weights_for_batched_plans():
    graph = infer_shapes.run(small_graph("qwen3"))
    for compiler_pass in (hoist_transposes, concat_qkv, concat_gate_up, fuse_epilogues, fold_norms):
        graph = compiler_pass.run(graph)
    one_row = store_out_in.run(graph, max_batch=1)
    batched = store_out_in.run(graph, max_batch=8)
    layouts = [op.attrs.get("layout") for op in batched.ops if op.kind == "linear"]
    assert layouts == [op.attrs.get("layout") for op in graph.ops if op.kind == "linear"]
    assert "in_out" in layouts and "out_in" not in layouts
    assert any(op.attrs.get("layout") == "out_in" for op in one_row.ops)
    assert batched.pass_log[-1][0] == "store_out_in" and "batch 8" in batched.pass_log[-1][1]


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_concat_qkv_merges_three_projections(family):
    graph = hoist_transposes.run(infer_shapes.run(small_graph(family)))
    merged = concat_qkv.run(graph)
    layers = graph.config["num_hidden_layers"]
    assert _kinds(graph).count("linear") - _kinds(merged).count("linear") == 2 * layers
    qkv = [op for op in merged.ops if op.name.endswith("qkv_proj")]
    assert len(qkv) == layers
    heads, kv_heads, head_dim = (graph.config[k] for k in ("num_attention_heads", "num_key_value_heads", "head_dim"))
    assert qkv[0].attrs["features"] == (heads + 2 * kv_heads) * head_dim
    assert ("bias" in qkv[0].weights) == (family == "qwen2")
    _same_logits(graph, merged)


def test_concat_qkv_declines_gpt2_fused_c_attn():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("gpt2")))
    assert _kinds(concat_qkv.run(graph)) == _kinds(graph)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_concat_gate_up_merges_two_projections(family):
    graph = hoist_transposes.run(infer_shapes.run(small_graph(family)))
    merged = concat_gate_up.run(graph)
    layers = graph.config["num_hidden_layers"]
    assert _kinds(graph).count("linear") - _kinds(merged).count("linear") == layers
    gate_up = [op for op in merged.ops if op.name.endswith("gate_up_proj")]
    assert gate_up[0].attrs["features"] == 2 * graph.config["intermediate_size"]
    _same_logits(graph, merged)


def test_fuse_epilogues_gpt2():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("gpt2")))
    fused = fuse_epilogues.run(graph)
    assert "gelu" not in _kinds(fused) and "add" not in _kinds(fused)
    epilogues = [op.attrs["epilogue"] for op in fused.ops if op.kind == "linear"]
    assert epilogues[:3] == [("bias",), ("bias", "residual"), ("bias", "gelu")]
    assert epilogues[3] == ("bias", "residual")
    _same_logits(graph, fused)


def test_fuse_epilogues_swiglu_after_gate_up_concat():
    graph = concat_gate_up.run(hoist_transposes.run(infer_shapes.run(small_graph("llama"))))
    fused = fuse_epilogues.run(graph)
    assert "silu_mul" not in _kinds(fused)
    gate_up = next(op for op in fused.ops if op.name.endswith("gate_up_proj"))
    assert gate_up.attrs["epilogue"] == ("silu_mul",)
    down = next(op for op in fused.ops if op.name.endswith("down_proj"))
    assert down.attrs["epilogue"] == ("residual",)
    _same_logits(graph, fused)


def test_fuse_epilogues_declines_shared_output():
    graph = infer_shapes.run(small_graph("llama"))
    # silu_mul's gate and up come from two linears (no concat): neither output has one consumer
    # of a fusable kind, so the linears keep empty epilogues.
    fused = fuse_epilogues.run(hoist_transposes.run(graph))
    gate = next(op for op in fused.ops if op.name.endswith("gate_proj"))
    assert gate.attrs["epilogue"] == ()
    assert "silu_mul" in _kinds(fused)


def test_fuse_add_norm_fuses_unfused_residuals(family):
    graph = hoist_transposes.run(infer_shapes.run(small_graph(family)))
    fused = fuse_add_norm.run(graph)
    adds = _kinds(graph).count("add")
    # every residual add but the last is read by the next block's norm (the last by the final norm)
    assert _kinds(fused).count("add_norm") == adds
    assert _kinds(fused).count("add") == 0
    _same_logits(graph, fused)


def test_fold_norms_removes_whole_row_norms(family):
    graph = fuse_epilogues.run(concat_gate_up.run(concat_qkv.run(hoist_transposes.run(infer_shapes.run(
        small_graph(family))))))
    folded = fold_norms.run(graph)
    layers = graph.config.get("n_layer") or graph.config["num_hidden_layers"]
    remaining = [op for op in folded.ops if op.kind in ("layernorm", "rmsnorm")]
    # both per-layer norms and the final one fold; Qwen3's per-head q/k norms stay
    assert len([op for op in graph.ops if op.kind in ("layernorm", "rmsnorm")]) - len(remaining) == 2 * layers + 1
    assert all(op.attrs["group"] < graph.tensors[op.inputs["x"]].shape[1] for op in remaining)
    prologues = [op for op in folded.ops if op.kind == "linear" and "prologue" in op.attrs]
    assert len(prologues) == 2 * layers + 1
    # each folded norm's input comes with row statistics from the op that wrote it
    for op in prologues:
        producer = folded.producer(op.inputs["x"])
        assert producer.kind in ("linear", "embed") and producer.outputs[1] == op.inputs["stats"]
        assert producer.attrs["row_stats"] == op.attrs["prologue"]["norm"]
    kind = "layernorm" if family == "gpt2" else "rmsnorm"
    assert {op.attrs["prologue"]["norm"] for op in prologues} == {kind}
    # no stored norm scale survives: each lives in its linear's folded weight
    recipes = {w.recipe[0] for w in folded.weights.values()}
    assert "fold_scale" in recipes and ("fold_bias" in recipes) == (family == "gpt2")
    _same_logits(graph, folded)


def test_fold_norms_weights_match_the_norm():
    """A folded LayerNorm + linear equals norm-then-matmul on fresh rows with a non-zero mean."""
    from compiler.ir import Weight
    from compiler.weights import build_weight
    from runtime.kernels.shared import norm_rstd, row_stats
    rng = np.random.default_rng(7)
    rows, width, features = 5, 48, 24  # 48 columns: the second 32-column group of the stats is partial
    values = {"w": rng.standard_normal((width, features)).astype(np.float32),
              "g": (1 + 0.1 * rng.standard_normal(width)).astype(np.float32),
              "beta": rng.standard_normal(width).astype(np.float32),
              "b": rng.standard_normal(features).astype(np.float32)}

    class Source:
        def get(self, name, shape, init="normal"):
            return values[name]

    weights = {name: Weight(name, ("checkpoint", name), shape=value.shape) for name, value in values.items()}
    weights["w'"] = Weight("w'", ("fold_scale", "w", "g", True))
    weights["b'"] = Weight("b'", ("fold_bias", "w", "beta", "b"))
    x = (3.0 + 2.0 * rng.standard_normal((rows, width))).astype(np.float32)
    normed = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * values["g"] + values["beta"]
    expected = normed @ values["w"] + values["b"]
    stats = row_stats(x, "layernorm")
    assert stats.shape == (rows, 4)  # 2 groups of squares, then 2 of sums
    rstd = norm_rstd(stats, width, "layernorm", 1e-5)
    folded = (x @ build_weight(weights, "w'", Source())) * rstd + build_weight(weights, "b'", Source())
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_fuse_norm_rope_folds_qwen3_qk_norms():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("qwen3")))
    fused = fuse_norm_rope.run(graph)
    layers = graph.config["num_hidden_layers"]
    assert _kinds(graph).count("rmsnorm") - _kinds(fused).count("rmsnorm") == 2 * layers
    ropes = [op for op in fused.ops if op.kind == "rope"]
    assert len(ropes) == 2 * layers and all("norm_weight" in op.weights for op in ropes)
    _same_logits(graph, fused)
    reference, _ = run_graph(graph, TOKENS, decode=True)
    result, _ = run_graph(fused, TOKENS, decode=True)
    assert np.abs(result - reference).max() / np.abs(reference).max() < 1e-5


def test_fuse_norm_rope_declines_llama():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("llama")))
    assert _kinds(fuse_norm_rope.run(graph)) == _kinds(graph)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_merge_qk_rope_makes_one_rope_per_layer(family):
    graph = fuse_norm_rope.run(concat_qkv.run(hoist_transposes.run(infer_shapes.run(small_graph(family)))))
    merged = merge_qk_rope.run(graph)
    layers = graph.config["num_hidden_layers"]
    ropes = [op for op in merged.ops if op.kind == "rope"]
    assert len(ropes) == layers and _kinds(graph).count("rope") == 2 * layers
    heads, kv_heads = graph.config["num_attention_heads"], graph.config["num_key_value_heads"]
    assert ropes[0].attrs["heads"] == heads + kv_heads and ropes[0].attrs["q_heads"] == heads
    assert ("k_norm_weight" in ropes[0].weights) == (family == "qwen3")
    _same_logits(graph, merged)
    reference, _ = run_graph(graph, TOKENS, decode=True)
    result, _ = run_graph(merged, TOKENS, decode=True)
    assert np.abs(result - reference).max() / np.abs(reference).max() < 1e-5


def test_merge_qk_rope_needs_adjacent_q_and_k():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("llama")))  # separate q/k projections
    assert _kinds(merge_qk_rope.run(graph)) == _kinds(graph)
