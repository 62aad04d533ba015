"""Store every linear weight in the [in, out] layout the matmul kernel reads.

Rewrites each `linear` with layout `out_in` (Hugging Face nn.Linear) to read a new weight whose
recipe transposes the checkpoint tensor at compile time, so the runtime transposes nothing.
Declines linears already `in_out` (GPT-2's Conv1D). A tied weight keeps its original too when
another op (the embedding gather) still reads it.
Order: right after infer_shapes; the merges and fusions expect [in, out] linears.
"""

from compiler.passes.context import DEFAULT
from compiler.passes.patterns import transpose_linears


def run(graph, context=DEFAULT):
    """Return a copy of `graph` whose linears all read [in, out] weights."""
    graph = graph.copy()
    hoisted = transpose_linears(graph, lambda op: op.attrs.get("layout", "out_in") == "out_in", "in_out")
    graph.log("hoist_transposes", f"{hoisted} linear weights stored as [in, out]")
    return graph
