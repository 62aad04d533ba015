"""hoist_transposes: every linear reads an [in, out] weight, transposed at compile time."""

import numpy as np

from compiler.passes import hoist_transposes, infer_shapes
from compiler.weights import RandomWeights, materialize
from tests.conftest import small_graph
from tests.graph_exec import TOKENS, assert_same_logits, run_graph


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
    assert_same_logits(hoist_transposes.run(graph), graph)
