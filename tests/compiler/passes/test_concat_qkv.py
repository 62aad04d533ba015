"""concat_qkv: an attention's q, k and v projections become one matmul and a split."""

import pytest

from compiler.passes import concat_qkv, hoist_transposes, infer_shapes
from tests.conftest import small_graph
from tests.graph_exec import assert_same_logits, kinds


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_concat_qkv_merges_three_projections(family):
    graph = hoist_transposes.run(infer_shapes.run(small_graph(family)))
    merged = concat_qkv.run(graph)
    layers = graph.config["num_hidden_layers"]
    assert kinds(graph).count("linear") - kinds(merged).count("linear") == 2 * layers
    qkv = [op for op in merged.ops if op.name.endswith("qkv_proj")]
    assert len(qkv) == layers
    heads, kv_heads, head_dim = (graph.config[k] for k in ("num_attention_heads", "num_key_value_heads", "head_dim"))
    assert qkv[0].attrs["features"] == (heads + 2 * kv_heads) * head_dim
    assert ("bias" in qkv[0].weights) == (family == "qwen2")
    assert_same_logits(graph, merged)


def test_concat_qkv_declines_gpt2_fused_c_attn():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("gpt2")))
    assert kinds(concat_qkv.run(graph)) == kinds(graph)
