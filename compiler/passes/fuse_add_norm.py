"""Fuse a residual `add` with the LayerNorm/RMSNorm that reads its sum into one `add_norm` op.

The fused op writes both the sum (still needed as the residual stream) and the normalized rows,
reading each row once. Declines per-head norms (group smaller than the row) and adds whose sum
no whole-row norm reads. After fuse_epilogues most residual adds already live in matmul
epilogues, so this catches the rest.
Order: after fuse_epilogues and fold_norms.
"""

from compiler.ir import Op
from compiler.passes.context import DEFAULT
from compiler.passes.patterns import whole_row_norm


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with add -> norm pairs fused."""
    graph = graph.copy()
    fused = 0
    for add in [op for op in graph.ops if op.kind == "add"]:
        norm = next((op for op in graph.consumers(add.outputs[0]) if whole_row_norm(graph, op)), None)
        if norm is None:
            continue
        attrs = {"eps": norm.attrs["eps"], "norm": norm.kind}
        fused_op = Op("add_norm", f"{add.name}+{norm.name}", dict(add.inputs), dict(norm.weights),
                      [add.outputs[0], norm.outputs[0]], attrs, add.where, add.layer)
        graph.ops[graph.ops.index(add)] = fused_op
        graph.ops.remove(norm)
        fused += 1
    graph.log("fuse_add_norm", f"{fused} add + norm pairs fused")
    return graph

