"""Store linear weights quantized (`cgc compile --quant int8|int4|fp8`; formats: runtime/quant.py).

Rewrites every `linear` to read codes plus scales (and int4 minima) made at compile time from its
float weight, in the layout store_out_in chose; the op gains attrs["quant"] = {mode, group_size}
and the weights `weight_scale` (and `weight_min`). The LM head (the linear writing the logits)
takes int8 when the mode is int4: its error reaches every logit directly, and per-channel int8
still halves its bytes (not yet measured against an int4 head: docs/quantization.md). Embedding tables stay as they are: a decode
step gathers one row of them per sequence.
Declines plans without --quant. Order: after the last infer_shapes (the codes no longer have the
weight's [in, out] shape), before plan_buffers.
"""

from compiler.errors import GraphError
from compiler.ir import Weight
from compiler.passes.context import DEFAULT
from runtime.quant import CODE_DTYPES, PARTS

ROLES = {"codes": "weight", "scale": "weight_scale", "min": "weight_min"}


def run(graph, context=DEFAULT):
    """Return a copy of `graph` whose linears read quantized weights (context.quant: mode, group)."""
    if context.quant is None:
        return graph
    graph = graph.copy()
    mode, group_size, *scales = context.quant  # (mode, group size[, scale dtype])
    logits = set(graph.outputs.values())
    counts = {}
    for op in graph.ops:
        if op.kind != "linear":
            continue
        op_mode = "int8" if mode == "int4" and logits.intersection(op.outputs) else mode
        _quantize(graph, op, op_mode, group_size if op_mode == "int4" else None, scales[0] if scales else None)
        counts[op_mode] = counts.get(op_mode, 0) + 1
    graph.prune_weights()
    summary = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
    graph.log("quantize_linears", f"linear weights quantized: {summary or 'none'}"
              + (f" (int4 groups of {group_size})" if "int4" in counts else ""))
    return graph


def _quantize(graph, op, mode, group_size, scale_dtype=None):
    """Point `op` at the quantized parts of its weight (made once per weight)."""
    base = graph.weights[op.weights["weight"]]
    layout = op.attrs.get("layout", "out_in")
    rows, columns = base.shape
    depth, features = (columns, rows) if layout == "out_in" else (rows, columns)
    if mode == "int4" and (depth % group_size or depth < group_size):
        raise GraphError(f"{op.describe()}: --group-size {group_size} does not divide the {depth} input "
                         f"features of weight '{base.name}' (int4 groups run along them)")
    if scale_dtype is None or mode != "int4":  # float16 int4 scales in 16-bit plans
        scale_dtype = "float32" if graph.dtype == "float32" or mode != "int4" else "float16"
    shapes = _part_shapes(mode, layout, depth, features, group_size)
    names = {}
    for part in PARTS[mode]:
        name = f"{base.name}.{mode}.{part}"
        if name not in graph.weights:
            dtype = CODE_DTYPES[mode] if part == "codes" else scale_dtype
            graph.weights[name] = Weight(name, ("quantize", base.name, mode, group_size, layout, part, scale_dtype),
                                         shape=shapes[part], dtype=dtype)
        names[ROLES[part]] = name
    op.weights = {**names, **{role: name for role, name in op.weights.items() if role != "weight"}}
    op.attrs["quant"] = {"mode": mode, "group_size": group_size}


def _part_shapes(mode, layout, depth, features, group_size):
    """Shapes of the codes and scales of a [depth -> features] linear stored in `layout`."""
    out_in = layout == "out_in"
    if mode != "int4":
        return {"codes": (features, depth) if out_in else (depth, features), "scale": (features,)}
    codes = (features, depth // 2) if out_in else (depth // 2, features)
    groups = (features, depth // group_size) if out_in else (depth // group_size, features)
    return {"codes": codes, "scale": groups, "min": groups}
