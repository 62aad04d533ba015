"""Run an IR graph (before or after any pass) on the NumPy executor, for pass semantics tests."""

import numpy as np

from compiler.compile import region_image
from compiler.lower import Lowering, ProgramShape
from compiler.passes import infer_shapes, plan_buffers
from compiler.weights import RandomWeights, encode, materialize
from runtime.numpy_executor import NumpyExecutor


def run_graph(graph, tokens, seed=0):
    """Prefill logits [S, V] of one sequence `tokens` through `graph` with seeded random weights."""
    graph = plan_buffers.run(infer_shapes.run(graph))
    seq = len(tokens)
    lowering = Lowering(graph, max_batch=1, max_seq=seq)
    program = lowering.lower_program(ProgramShape(f"prefill_{seq}", 1, seq))
    values = materialize(lowering.weights, RandomWeights(seed), lowering.stored)
    table, arrays = [], []
    for name in lowering.stored:
        offset, nbytes = lowering.weight_layout[name]
        arrays.append(encode(values[name], lowering.weights[name].dtype))
        table.append({"name": name, "offset": offset, "nbytes": nbytes, "row_stride": lowering.row_stride(name)})
    plan = {
        "regions": {"arena": lowering.arena_bytes, "io": lowering.io_bytes, "kv": lowering.kv_bytes,
                    "weights": lowering.weights_bytes},
        "weights": {"storage": "embedded", "blob": region_image(table, arrays, lowering.weights_bytes).tobytes()},
        "kernels": lowering.kernels,
        "programs": {f"prefill_{seq}": program},
    }
    executor = NumpyExecutor(plan)
    result = executor.run(f"prefill_{seq}", np.array([tokens]), [0], [seq])
    return result["logits"], plan
