"""merge_qk_rope: an attention's q and k ropes become one rope over both."""

import numpy as np
import pytest

from compiler.passes import concat_qkv, fuse_norm_rope, hoist_transposes, infer_shapes, merge_qk_rope
from tests.conftest import small_graph
from tests.graph_exec import TOKENS, assert_same_logits, kinds, run_graph


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_merge_qk_rope_makes_one_rope_per_layer(family):
    graph = fuse_norm_rope.run(concat_qkv.run(hoist_transposes.run(infer_shapes.run(small_graph(family)))))
    merged = merge_qk_rope.run(graph)
    layers = graph.config["num_hidden_layers"]
    ropes = [op for op in merged.ops if op.kind == "rope"]
    assert len(ropes) == layers and kinds(graph).count("rope") == 2 * layers
    heads, kv_heads = graph.config["num_attention_heads"], graph.config["num_key_value_heads"]
    assert ropes[0].attrs["heads"] == heads + kv_heads and ropes[0].attrs["q_heads"] == heads
    assert ("k_norm_weight" in ropes[0].weights) == (family == "qwen3")
    assert_same_logits(graph, merged)
    reference, _ = run_graph(graph, TOKENS, decode=True)
    result, _ = run_graph(merged, TOKENS, decode=True)
    assert np.abs(result - reference).max() / np.abs(reference).max() < 1e-5


def test_merge_qk_rope_needs_adjacent_q_and_k():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("llama")))  # separate q/k projections
    assert kinds(merge_qk_rope.run(graph)) == kinds(graph)
