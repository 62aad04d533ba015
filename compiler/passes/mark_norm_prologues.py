"""Mark each whole-row norm whose output only linears read as a prologue of those linears.

Nothing is removed: prefill programs still run the norm as its own kernel (a 128-row matmul tile
would recompute the row statistics in every column tile), while the decode lowering skips the
norm and lets each matmul CTA normalize its few rows while loading them, saving a launch and a
round trip through memory per norm. The linear gains the norm's input as role `norm_x` (so
buffer planning keeps it alive until the matmul) and its weights as `norm_weight`/`norm_bias`.
Declines per-head norms, norms with a non-linear reader, and linears that already have one.
Not in PIPELINE (see compiler/passes/__init__.py): slower on the H100 with this cuTile.
"""

from compiler.passes.fuse_add_norm import _whole_row_norm


def run(graph):
    """Return a copy of `graph` with norm -> linear prologues marked."""
    graph = graph.copy()
    marked = 0
    for norm in [op for op in graph.ops if op.kind in ("layernorm", "rmsnorm")]:
        if not _whole_row_norm(graph, norm):
            continue
        readers = graph.consumers(norm.outputs[0])
        if not readers or any(op.kind != "linear" or "prologue" in op.attrs for op in readers):
            continue
        for linear in readers:
            linear.inputs["norm_x"] = norm.inputs["x"]
            linear.weights["norm_weight"] = norm.weights["weight"]
            if "bias" in norm.weights:
                linear.weights["norm_bias"] = norm.weights["bias"]
            linear.attrs["prologue"] = {"norm": norm.kind, "eps": norm.attrs["eps"], "op": norm.name}
        norm.attrs["prologue_of"] = [linear.name for linear in readers]
        marked += 1
    graph.log("mark_norm_prologues", f"{marked} norms marked as matmul prologues (fused in decode)")
    return graph
