"""Graph patterns and rewrites several passes share (not a pass itself)."""

from compiler.ir import Op, Tensor, Weight


def layer_prefix(op):
    """"l<layer>." for an op inside a layer, else "": the prefix of names a rewrite makes."""
    return f"l{op.layer}." if op.layer is not None else ""


def whole_row_norm(graph, op):
    """Whether `op` is a LayerNorm, or an RMSNorm over whole rows (not per head)."""
    if op.kind == "layernorm":
        return True
    if op.kind == "rmsnorm":
        width = graph.tensors[op.inputs["x"]].shape[1]
        return op.attrs.get("group") in (None, width)
    return False


def transposed_name(weight_name):
    """Name of the stored transpose of `weight_name`."""
    return f"{weight_name}^T"


def transpose_of(graph, weight_name):
    """Name of a weight of `graph` holding the transpose of `weight_name`: the weight it is itself
    a transpose of, or its stored transpose (added once)."""
    weight = graph.weights[weight_name]
    if weight.recipe[0] == "transpose":
        return weight.recipe[1]
    name = transposed_name(weight_name)
    if name not in graph.weights:
        graph.weights[name] = Weight(name, ("transpose", weight_name), shape=tuple(reversed(weight.shape)),
                                     dtype=weight.dtype)
    return name


def transpose_linears(graph, picked, layout):
    """Make each linear of `graph` for which `picked(op)` holds read its weight's transpose, now in
    `layout`; drop weights nothing reads any more. Returns how many linears changed."""
    changed = 0
    for op in graph.ops:
        if op.kind == "linear" and picked(op):
            op.weights["weight"] = transpose_of(graph, op.weights["weight"])
            op.attrs["layout"] = layout
            changed += 1
    graph.prune_weights()
    return changed


def mergeable_linears(graph, linears):
    """True when `linears` are distinct in_out linears on one input, all with or all without bias."""
    if len({id(op) for op in linears}) != len(linears) or any(op is None or op.kind != "linear" for op in linears):
        return False
    if len({op.inputs["x"] for op in linears}) != 1:
        return False
    if any(op.attrs.get("layout") != "in_out" or op.attrs.get("epilogue") for op in linears):
        return False
    return len({("bias" in op.weights) for op in linears}) == 1


def merge_linears(graph, linears, merged_name, weight_name):
    """Replace sibling `linears` (in graph.ops) by one linear over their weights concatenated along
    the output axis, then a zero-copy `split` giving the old outputs; returns the merged op."""
    first = min(graph.ops.index(op) for op in linears)
    features = [op.attrs["features"] for op in linears]
    weights = {"weight": _concat_weight(graph, [op.weights["weight"] for op in linears], weight_name + ".weight", 1)}
    if "bias" in linears[0].weights:
        weights["bias"] = _concat_weight(graph, [op.weights["bias"] for op in linears], weight_name + ".bias", 0)
    out_name = f"{merged_name}.out"
    graph.tensors[out_name] = Tensor(out_name)
    merged = Op("linear", merged_name, {"x": linears[0].inputs["x"]}, weights, [out_name],
                {"features": sum(features), "layout": "in_out"}, linears[0].where, linears[0].layer)
    split = Op("split", f"{merged_name}.split", {"x": out_name}, {}, [op.outputs[0] for op in linears],
               {"sizes": features}, linears[0].where, linears[0].layer)
    for op in linears:
        graph.ops.remove(op)
    graph.ops[first:first] = [merged, split]
    graph.prune_weights()
    return merged


def _concat_weight(graph, names, new_name, axis):
    parts = [graph.weights[n] for n in names]
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    graph.weights[new_name] = Weight(new_name, ("concat", tuple(names), axis), shape=tuple(shape),
                                     dtype=parts[0].dtype)
    return new_name
