"""Shared rewrite for concat_qkv and concat_gate_up: sibling linears -> one wider linear.

Not a pass on its own: it merges linears that read the same input into one linear over a weight
concatenated along the output axis, followed by a zero-copy `split` giving the old outputs.
"""

from compiler.ir import Op, Tensor, Weight


def mergeable(graph, linears):
    """True when `linears` are distinct in_out linears on one input, all with or all without bias."""
    if len({id(op) for op in linears}) != len(linears) or any(op is None or op.kind != "linear" for op in linears):
        return False
    if len({op.inputs["x"] for op in linears}) != 1:
        return False
    if any(op.attrs.get("layout") != "in_out" or op.attrs.get("epilogue") for op in linears):
        return False
    return len({("bias" in op.weights) for op in linears}) == 1


def merge(graph, linears, merged_name, weight_name):
    """Replace `linears` (in graph.ops) by one linear + split; returns the merged op."""
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
