"""fold_norms: whole-row norms fold into the weights of the linears that read them."""

import numpy as np

from compiler.passes import concat_gate_up, concat_qkv, fold_norms, fuse_epilogues, hoist_transposes, infer_shapes
from tests.conftest import small_graph
from tests.graph_exec import assert_same_logits


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
    assert_same_logits(graph, folded)


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
            return values[name].copy()  # like every weight source: recipes scale what they get in place

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


def test_fold_norms_folds_rows_wider_than_one_decode_statistics_tile():
    """7B-wide rows (3584 columns: 448 eight-column groups) fold like narrow ones."""
    from compiler.graph_loader import load_graph
    graph = fuse_epilogues.run(concat_gate_up.run(concat_qkv.run(hoist_transposes.run(infer_shapes.run(load_graph(
        "llama", preset="tiny", overrides={"hidden_size": 3584, "num_attention_heads": 14,
                                           "num_key_value_heads": 2, "head_dim": 256}))))))
    folded = fold_norms.run(graph)
    norms = sum(op.kind == "rmsnorm" for op in graph.ops)
    assert sum(op.kind == "rmsnorm" for op in folded.ops) < norms
    assert any(op.attrs.get("prologue") for op in folded.ops)
