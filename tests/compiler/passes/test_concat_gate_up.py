"""concat_gate_up: a SwiGLU's gate and up projections become one matmul and a split."""

import pytest

from compiler.passes import concat_gate_up, hoist_transposes, infer_shapes
from tests.conftest import small_graph
from tests.graph_exec import assert_same_logits, kinds


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_concat_gate_up_merges_two_projections(family):
    graph = hoist_transposes.run(infer_shapes.run(small_graph(family)))
    merged = concat_gate_up.run(graph)
    layers = graph.config["num_hidden_layers"]
    assert kinds(graph).count("linear") - kinds(merged).count("linear") == layers
    gate_up = [op for op in merged.ops if op.name.endswith("gate_up_proj")]
    assert gate_up[0].attrs["features"] == 2 * graph.config["intermediate_size"]
    assert_same_logits(graph, merged)
