"""Infer every tensor's and weight's shape and dtype from op semantics, and reject mismatches.

Declines nothing: any inconsistency (widths that differ, heads that do not divide, a weight
used with two shapes) raises GraphError naming the file, line and op.
Order: first (on the loaded graph), and again after the rewrites to re-validate them.
"""

from compiler.errors import GraphError
from compiler.passes.context import DEFAULT
from runtime.plan_layout import DECODE_STATS_GROUP, stats_width

ROWS = "T"


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with shapes and dtypes filled in and validated."""
    graph = graph.copy()
    for op in graph.ops:
        _INFER[op.kind](graph, op)
    for public, tensor_name in graph.outputs.items():
        graph.tensors[tensor_name].dtype = "float32"
    if not any(name == "infer_shapes" for name, _ in graph.pass_log):
        params = sum(_count(w.shape) for w in graph.weights.values() if w.recipe[0] == "checkpoint")
        graph.log("infer_shapes", f"{len(graph.tensors)} tensors, {len(graph.weights)} weights "
                                  f"({params / 1e6:.1f} M parameters) checked")
    return graph


def _count(shape):
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


def _width(graph, op, role):
    tensor = graph.tensors[op.inputs[role]]
    if len(tensor.shape) != 2 or tensor.shape[0] != ROWS:
        raise GraphError(f"{op.describe()}: input '{role}' ({tensor.name}) must be [T, N], got {list(tensor.shape)}")
    return tensor.shape[1]


def _set_output(graph, op, index, width, view_of=None):
    tensor = graph.tensors[op.outputs[index]]
    tensor.shape = (ROWS, width)
    tensor.dtype = graph.dtype
    tensor.view_of = view_of


def _set_stats(graph, op, width):
    """A producer's row statistics (fold_norms): [T, stats_width] fp32 (layout: runtime/plan_layout.py),
    as wide as the narrowest column groups need (decode's); prefill programs use the first columns."""
    if len(op.outputs) < 2:
        return
    if op.attrs.get("row_stats") not in ("layernorm", "rmsnorm"):
        raise GraphError(f"{op.describe()}: a second output needs row_stats 'layernorm' or 'rmsnorm'")
    tensor = graph.tensors[op.outputs[1]]
    columns = stats_width(width, op.attrs["row_stats"], DECODE_STATS_GROUP)
    tensor.shape, tensor.dtype, tensor.view_of = (ROWS, columns), "float32", None


def _set_weight(graph, op, role, shape):
    weight = graph.weights[op.weights[role]]
    shape = tuple(int(d) for d in shape)
    if weight.shape is not None and tuple(weight.shape) != shape:
        raise GraphError(f"{op.describe()}: weight '{weight.name}' used as {list(shape)} here "
                         f"but as {list(weight.shape)} elsewhere")
    weight.shape = shape
    weight.dtype = weight.dtype or graph.dtype


def _same_width(graph, op, roles):
    widths = {role: _width(graph, op, role) for role in roles}
    if len(set(widths.values())) != 1:
        detail = ", ".join(f"{r}={graph.tensors[op.inputs[r]].name} [T, {w}]" for r, w in widths.items())
        raise GraphError(f"{op.describe()}: shape mismatch between inputs: {detail}")
    return next(iter(widths.values()))


def _embed(graph, op):
    tokens = graph.tensors[op.inputs["tokens"]]
    if tokens.dtype != "int32":
        raise GraphError(f"{op.describe()}: 'tokens' must be the int32 program input, got {tokens.name}")
    _set_weight(graph, op, "weight", (op.attrs["vocab"], op.attrs["dim"]))
    if "position_weight" in op.weights:
        if not op.attrs.get("positions"):
            raise GraphError(f"{op.describe()}: 'position_weight' needs the attribute 'positions'")
        _set_weight(graph, op, "position_weight", (op.attrs["positions"], op.attrs["dim"]))
    _set_output(graph, op, 0, op.attrs["dim"])
    _set_stats(graph, op, op.attrs["dim"])


def _layernorm(graph, op):
    width = _width(graph, op, "x")
    _set_weight(graph, op, "weight", (width,))
    _set_weight(graph, op, "bias", (width,))
    _set_output(graph, op, 0, width)


def _rmsnorm(graph, op):
    width = _width(graph, op, "x")
    group = op.attrs.get("group") or width
    if width % group:
        raise GraphError(f"{op.describe()}: group {group} does not divide width {width}")
    op.attrs["group"] = group
    _set_weight(graph, op, "weight", (group,))
    _set_output(graph, op, 0, width)


def _linear(graph, op):
    in_features = _width(graph, op, "x")
    features = op.attrs["features"]
    layout = op.attrs.get("layout", "out_in")
    if layout not in ("out_in", "in_out"):
        raise GraphError(f"{op.describe()}: layout must be 'out_in' or 'in_out', got {layout!r}")
    shape = (features, in_features) if layout == "out_in" else (in_features, features)
    _set_weight(graph, op, "weight", shape)
    if "bias" in op.weights:
        _set_weight(graph, op, "bias", (features,))
    epilogue = op.attrs.get("epilogue", ())
    out_width = features // 2 if "silu_mul" in epilogue else features
    if "silu_mul" in epilogue and features % 2:
        raise GraphError(f"{op.describe()}: silu_mul epilogue needs an even feature count, got {features}")
    if "residual" in epilogue and _width(graph, op, "residual") != out_width:
        raise GraphError(f"{op.describe()}: residual width {_width(graph, op, 'residual')} != output width {out_width}")
    _set_output(graph, op, 0, out_width)
    _set_stats(graph, op, out_width)
    if "stats" in op.inputs:
        stats = graph.tensors[op.inputs["stats"]]
        if stats.dtype != "float32" or len(stats.shape) != 2 or stats.shape[0] != ROWS:
            raise GraphError(f"{op.describe()}: input 'stats' ({stats.name}) must be [T, G] float32 row statistics")


def _split(graph, op):
    width = _width(graph, op, "x")
    sizes = [int(s) for s in op.attrs["sizes"]]
    if sum(sizes) != width or len(sizes) != len(op.outputs):
        raise GraphError(f"{op.describe()}: split sizes {sizes} (into {len(op.outputs)} outputs) "
                         f"do not cover input width {width}")
    source = graph.tensors[op.inputs["x"]]
    base, start = (source.view_of if source.view_of else (source.name, 0))
    for index, size in enumerate(sizes):
        _set_output(graph, op, index, size, view_of=(base, start))
        start += size


def _rope(graph, op):
    width = _width(graph, op, "x")
    heads, head_dim = op.attrs["heads"], op.attrs["head_dim"]
    if heads * head_dim != width or head_dim % 2:
        raise GraphError(f"{op.describe()}: {heads} heads x head_dim {head_dim} (even) must equal width {width}")
    _set_output(graph, op, 0, width)


def _attention(graph, op):
    heads, kv_heads, head_dim = op.attrs["heads"], op.attrs["kv_heads"], op.attrs["head_dim"]
    if kv_heads <= 0 or heads % kv_heads:
        raise GraphError(f"{op.describe()}: kv_heads {kv_heads} must divide heads {heads}")
    for role, count in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
        if _width(graph, op, role) != count * head_dim:
            raise GraphError(f"{op.describe()}: input '{role}' width {_width(graph, op, role)} "
                             f"!= {count} heads x head_dim {head_dim}")
    if op.attrs.get("scale") is None:
        op.attrs["scale"] = head_dim ** -0.5
    _set_output(graph, op, 0, heads * head_dim)


def _elementwise(roles):
    def infer(graph, op):
        _set_output(graph, op, 0, _same_width(graph, op, roles))
    return infer


def _add_norm(graph, op):
    width = _same_width(graph, op, ("a", "b"))
    _set_weight(graph, op, "weight", (width,))
    if "bias" in op.weights:
        _set_weight(graph, op, "bias", (width,))
    _set_output(graph, op, 0, width)
    _set_output(graph, op, 1, width)


_INFER = {
    "embed": _embed, "layernorm": _layernorm, "rmsnorm": _rmsnorm, "linear": _linear, "split": _split,
    "rope": _rope, "attention": _attention, "gelu": _elementwise(("x",)),
    "silu_mul": _elementwise(("gate", "up")), "add": _elementwise(("a", "b")), "add_norm": _add_norm,
}
