"""Run an IR graph (before or after any pass) on the NumPy executor, for pass semantics tests."""

import numpy as np

from compiler.compile import region_image
from compiler.lower import Lowering, ProgramShape
from compiler.passes import infer_shapes, plan_buffers
from compiler.weights import RandomWeights, encode, materialize
from runtime.numpy_executor import NumpyExecutor


def run_graph(graph, tokens, seed=0, decode=False, max_seq=None):
    """Prefill logits [S, V] of one sequence `tokens` through `graph` with seeded random weights;
    with `decode`, the prefill takes all but the last token and the decode program's logits [1, V]
    for the last one are returned. The plan holds `max_seq` positions (default: the tokens)."""
    graph = plan_buffers.run(infer_shapes.run(graph))
    seq = len(tokens) - 1 if decode else len(tokens)
    lowering = Lowering(graph, max_batch=1, max_seq=max_seq or len(tokens), prompt_logits=True)
    programs = {f"prefill_{seq}": lowering.lower_program(ProgramShape(f"prefill_{seq}", 1, seq))}
    if decode:
        programs["decode"] = lowering.lower_program(ProgramShape("decode", 1, 1))
    values = materialize(lowering.weights, RandomWeights(seed), lowering.stored)
    table, arrays = [], []
    for name in lowering.stored:
        offset, nbytes = lowering.weight_layout[name]
        arrays.append(encode(values[name], lowering.weights[name].dtype))
        table.append({"name": name, "offset": offset, "nbytes": nbytes, "row_stride": lowering.row_stride(name)})
    plan = {
        "regions": {"arena": lowering.arena_bytes, "io": lowering.io_bytes, "kv": lowering.kv_bytes,
                    "scratch": lowering.scratch_bytes, "weights": lowering.weights_bytes},
        "weights": {"storage": "embedded", "blob": region_image(table, arrays, lowering.weights_bytes).tobytes()},
        "kernels": lowering.kernels,
        "programs": programs,
    }
    executor = NumpyExecutor(plan)
    result = executor.run(f"prefill_{seq}", np.array([tokens[:seq]]), [0], [seq])
    if decode:
        result = executor.run("decode", np.array([tokens[seq:]]), [seq], [1])
    return result["logits"], plan


TOKENS = [5, 17, 3, 250, 42, 7]  # a prompt for the small graphs' vocabularies


def kinds(graph):
    """The op kinds of `graph`, in order."""
    return [op.kind for op in graph.ops]


def assert_same_logits(before, after, tokens=TOKENS):
    """A pass kept the forward: `after` gives `before`'s prefill logits (relative error < 1e-5)."""
    reference, _ = run_graph(before, tokens)
    result, _ = run_graph(after, tokens)
    error = np.abs(result - reference).max() / np.abs(reference).max()
    assert error < 1e-5, error
