"""Store every linear weight in the [in, out] layout the matmul kernel reads.

Rewrites each `linear` with layout `out_in` (Hugging Face nn.Linear) to read a new weight whose
recipe transposes the checkpoint tensor at compile time, so the runtime transposes nothing.
Declines linears already `in_out` (GPT-2's Conv1D). A tied weight keeps its original too when
another op (the embedding gather) still reads it.
"""

from compiler.ir import Weight


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


def run(graph):
    """Return a copy of `graph` whose linears all read [in, out] weights."""
    graph = graph.copy()
    hoisted = transpose_linears(graph, lambda op: op.attrs.get("layout", "out_in") == "out_in", "in_out")
    graph.log("hoist_transposes", f"{hoisted} linear weights stored as [in, out]")
    return graph
