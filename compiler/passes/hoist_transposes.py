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


def run(graph):
    """Return a copy of `graph` whose linears all read [in, out] weights."""
    graph = graph.copy()
    hoisted = 0
    for op in graph.ops:
        if op.kind != "linear" or op.attrs.get("layout", "out_in") != "out_in":
            continue
        source = graph.weights[op.weights["weight"]]
        name = transposed_name(source.name)
        if name not in graph.weights:
            graph.weights[name] = Weight(name, ("transpose", source.name), shape=tuple(reversed(source.shape)),
                                         dtype=source.dtype)
        op.weights["weight"] = name
        op.attrs["layout"] = "in_out"
        hoisted += 1
    graph.prune_weights()
    graph.log("hoist_transposes", f"{hoisted} linear weights stored as [in, out]")
    return graph
