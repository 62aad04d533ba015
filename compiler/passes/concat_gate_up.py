"""Merge the gate and up projections feeding a `silu_mul` into one matmul.

When both inputs of a silu_mul come from in_out linears on the same input, they become one
linear over the [in, gate+up] concatenated weight and a zero-copy split (which fuse_epilogues
then folds into the matmul as a silu_mul epilogue). Declines otherwise.
Order: after hoist_transposes, before fuse_epilogues (which folds its split + silu_mul).
"""

from compiler.passes.context import DEFAULT
from compiler.passes.patterns import layer_prefix, merge_linears, mergeable_linears


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with each SwiGLU's gate and up projections merged."""
    graph = graph.copy()
    merged = 0
    for silu_mul in [op for op in graph.ops if op.kind == "silu_mul"]:
        linears = [graph.producer(silu_mul.inputs[role]) for role in ("gate", "up")]
        if not mergeable_linears(graph, linears):
            continue
        prefix = layer_prefix(silu_mul)
        weight_base = linears[0].weights["weight"].replace("^T", "").rsplit(".", 1)[0]
        weight_base = weight_base.rsplit("gate_proj", 1)[0] + "gate_up_proj"
        merge_linears(graph, linears, f"{prefix}gate_up_proj", weight_base)
        merged += 1
    graph.log("concat_gate_up", f"{merged} gate/up projection pairs -> 1 matmul each")
    return graph
