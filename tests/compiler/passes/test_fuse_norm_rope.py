"""fuse_norm_rope: Qwen3's per-head q/k RMSNorm folds into the rope reading it."""

import numpy as np

from compiler.passes import fuse_norm_rope, hoist_transposes, infer_shapes
from tests.conftest import small_graph
from tests.graph_exec import TOKENS, assert_same_logits, kinds, run_graph


def test_fuse_norm_rope_folds_qwen3_qk_norms():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("qwen3")))
    fused = fuse_norm_rope.run(graph)
    layers = graph.config["num_hidden_layers"]
    assert kinds(graph).count("rmsnorm") - kinds(fused).count("rmsnorm") == 2 * layers
    ropes = [op for op in fused.ops if op.kind == "rope"]
    assert len(ropes) == 2 * layers and all("norm_weight" in op.weights for op in ropes)
    assert_same_logits(graph, fused)
    reference, _ = run_graph(graph, TOKENS, decode=True)
    result, _ = run_graph(fused, TOKENS, decode=True)
    assert np.abs(result - reference).max() / np.abs(reference).max() < 1e-5


def test_fuse_norm_rope_declines_llama():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("llama")))
    assert kinds(fuse_norm_rope.run(graph)) == kinds(graph)
