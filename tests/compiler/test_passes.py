"""Each pass rewrites what it should and keeps the forward's logits (NumPy executor)."""

import numpy as np
import pytest

from compiler.passes import (concat_gate_up, concat_qkv, fuse_add_norm, fuse_epilogues, fuse_norm_rope,
                             hoist_transposes, infer_shapes, mark_norm_prologues, merge_qk_rope)
from compiler import lower
from compiler.errors import CompileError
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
    run_graph(hoisted, TOKENS)  # lowers and runs: the matmul kernel accepts only [in, out] weights


def test_lowering_refuses_out_in_weights():
    with pytest.raises(CompileError, match="hoist_transposes"):
        run_graph(infer_shapes.run(small_graph("llama")), TOKENS)


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


@pytest.mark.parametrize("family", ["gpt2", "qwen3"])
def test_mark_norm_prologues_fuses_decode_norms(family, monkeypatch):
    graph = fuse_epilogues.run(concat_gate_up.run(concat_qkv.run(hoist_transposes.run(infer_shapes.run(
        small_graph(family))))))
    marked = mark_norm_prologues.run(graph)
    norms = {op.name: op for op in marked.ops if op.attrs.get("prologue_of")}
    layers = graph.config.get("n_layer") or graph.config["num_hidden_layers"]
    assert len(norms) == 2 * layers + 1  # both per-layer norms and the final one; q/k norms decline
    first = next(iter(norms.values()))
    qkv = next(op for op in marked.ops if op.kind == "linear")
    assert qkv.attrs["prologue"]["norm"] == first.kind and qkv.inputs["norm_x"] == first.inputs["x"]

    def launched(program_prefix):
        _, plan = run_graph(marked, TOKENS, decode=True)
        name = next(n for n in plan["programs"] if n.startswith(program_prefix))
        return {launch["op"] for launch in plan["programs"][name]["launches"]}

    assert set(norms) <= launched("prefill") and not set(norms) & launched("decode")
    # an LM head too wide to split K keeps its norm as a kernel (800+ CTAs would each redo it)
    monkeypatch.setattr(lower, "SPLIT_K_MAX_COLUMNS", graph.config["vocab_size"] - 1)
    assert set(norms) & launched("decode") == {list(norms)[-1]}
    reference, _ = run_graph(graph, TOKENS, decode=True)
    monkeypatch.undo()
    result, _ = run_graph(marked, TOKENS, decode=True)
    assert np.abs(result - reference).max() / np.abs(reference).max() < 1e-5


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
