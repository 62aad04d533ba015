"""Fold a per-head RMSNorm (Qwen3's q_norm / k_norm) into the `rope` that reads it.

The rope kernel already holds each head's row in registers, so it normalizes the head before
rotating it: one launch and one round trip through memory fewer per norm (decode runs a launch
per op, so this halves Qwen3's per-layer q/k work). The rope gains weight `norm_weight` and
attr `norm_eps`. Declines norms whose group is not the rope's head_dim, with other readers, or
whose output is a graph output.
Order: after concat_qkv, before merge_qk_rope (which carries the fused norms along).
"""

from compiler.passes.context import DEFAULT


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with norm -> rope pairs fused."""
    graph = graph.copy()
    fused = 0
    for norm in [op for op in graph.ops if op.kind == "rmsnorm"]:
        if norm.outputs[0] in graph.outputs.values():
            continue
        readers = graph.consumers(norm.outputs[0])
        if len(readers) != 1 or readers[0].kind != "rope" or "norm_weight" in readers[0].weights:
            continue
        rope = readers[0]
        if norm.attrs.get("group") != rope.attrs["head_dim"]:
            continue
        rope.inputs["x"] = norm.inputs["x"]
        rope.weights["norm_weight"] = norm.weights["weight"]
        rope.attrs["norm_eps"] = norm.attrs["eps"]
        rope.name = f"{norm.name}+{rope.name}"
        graph.ops.remove(norm)
        fused += 1
    graph.prune_tensors()
    graph.log("fuse_norm_rope", f"{fused} per-head norms fused into rope")
    return graph
