"""fuse_add_norm: a residual add and the norm reading its sum become one add_norm."""

from compiler.passes import fuse_add_norm, hoist_transposes, infer_shapes
from tests.conftest import small_graph
from tests.graph_exec import assert_same_logits, kinds


def test_fuse_add_norm_fuses_unfused_residuals(family):
    graph = hoist_transposes.run(infer_shapes.run(small_graph(family)))
    fused = fuse_add_norm.run(graph)
    adds = kinds(graph).count("add")
    # every residual add but the last is read by the next block's norm (the last by the final norm)
    assert kinds(fused).count("add_norm") == adds
    assert kinds(fused).count("add") == 0
    assert_same_logits(graph, fused)
