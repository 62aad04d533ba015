"""store_out_in: one-row plans store narrow, gate+up and SM-starved linears [out, in]."""

import dataclasses

import numpy as np

from compiler.passes import (concat_gate_up, concat_qkv, fold_norms, fuse_epilogues, hoist_transposes, infer_shapes,
                             store_out_in)
from compiler.passes.context import PassContext
from compiler.tiles import SHIPPED
from compiler.weights import RandomWeights, materialize
from tests.conftest import small_graph
from tests.graph_exec import assert_same_logits


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
    assert_same_logits(graph, infer_shapes.run(stored))


def test_store_out_in_also_picks_linears_too_narrow_to_fill_the_target_sms(family):
    graph = infer_shapes.run(small_graph(family))
    for compiler_pass in (hoist_transposes, concat_qkv, concat_gate_up, fuse_epilogues, fold_norms):
        graph = compiler_pass.run(graph)
    untargeted = store_out_in.run(graph)
    targeted = store_out_in.run(graph, PassContext(sms=(90,)))  # small graphs: every linear is too narrow
    wide = {op.name for op in untargeted.ops if op.kind == "linear" and op.attrs["layout"] == "in_out"}
    assert len(wide) > 1  # qkv, up projections and the LM head
    logits = graph.outputs["logits"]
    for before, after in zip(graph.ops, targeted.ops):
        if before.kind == "linear":  # the LM head stays as it was
            expected = untargeted.ops[graph.ops.index(before)].attrs["layout"] if logits in before.outputs else "out_in"
            assert after.attrs["layout"] == expected, after.name
    assert_same_logits(graph, infer_shapes.run(targeted))


def test_store_out_in_keeps_in_out_weights_for_batched_plans():
    graph = infer_shapes.run(small_graph("qwen3"))
    for compiler_pass in (hoist_transposes, concat_qkv, concat_gate_up, fuse_epilogues, fold_norms):
        graph = compiler_pass.run(graph)
    one_row = store_out_in.run(graph, PassContext(max_batch=1))
    batched = store_out_in.run(graph, PassContext(max_batch=8))
    layouts = [op.attrs.get("layout") for op in batched.ops if op.kind == "linear"]
    assert layouts == [op.attrs.get("layout") for op in graph.ops if op.kind == "linear"]
    assert "in_out" in layouts and "out_in" not in layouts
    assert any(op.attrs.get("layout") == "out_in" for op in one_row.ops)
    assert batched.pass_log[-1][0] == "store_out_in" and "batch 8" in batched.pass_log[-1][1]
    # the limit is a tile rule the context carries
    any_batch = PassContext(max_batch=8, tile_rules=dataclasses.replace(SHIPPED, out_in_max_batch=8))
    assert [op.attrs.get("layout") for op in store_out_in.run(graph, any_batch).ops] == [
        op.attrs.get("layout") for op in one_row.ops]
