"""Merge the separate q, k and v projections feeding an attention into one matmul.

For each `attention`, follows q, k and v back through per-head ops (rmsnorm, rope) to their
linears; when all three read the same input with the same bias presence, they become one linear
over the concatenated [in, q+k+v] weight and a zero-copy split. Declines otherwise (e.g. GPT-2,
whose checkpoint already stores c_attn fused).
Order: after hoist_transposes (merges in_out linears only), before fuse_epilogues.
"""

from compiler.passes.context import DEFAULT
from compiler.passes.patterns import layer_prefix, merge_linears, mergeable_linears

_PASS_THROUGH = ("rope", "rmsnorm")


def _source_linear(graph, tensor_name):
    op = graph.producer(tensor_name)
    while op is not None and op.kind in _PASS_THROUGH:
        op = graph.producer(op.inputs["x"])
    return op


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with each attention's q/k/v projections merged."""
    graph = graph.copy()
    merged = 0
    for attention in [op for op in graph.ops if op.kind == "attention"]:
        linears = [_source_linear(graph, attention.inputs[role]) for role in ("q", "k", "v")]
        if not mergeable_linears(graph, linears):
            continue
        prefix = layer_prefix(attention)
        weight_base = linears[0].weights["weight"].rsplit(".", 1)[0].rsplit("q_proj", 1)[0] + "qkv_proj"
        merge_linears(graph, linears, f"{prefix}qkv_proj", weight_base.replace("^T", ""))
        merged += 1
    graph.log("concat_qkv", f"{merged} q/k/v projection triples -> 1 matmul each")
    return graph
