"""Store the weights of narrow linears (out features <= in features) and of merged gate+up
matmuls as [out, in] rows, in plans whose decode takes the one-row path.

A one-row (batch-1 decode) matmul then gives each CTA a few whole output rows of the weight, so
a narrow projection spreads over 4x the CTAs of 32-column [in, out] tiles (templates/matmul:
`weight_layout`). In plans that name target SMs, wider linears whose [in, out] one-row tiles
would leave SMs idle (TileRules.in_out_one_row_fill) are stored so too; LM heads never are.
Declines plans for more than TileRules.out_in_max_batch sequences: their decode takes MMA
tiles, which read [in, out] weights faster. Measurements: docs/tuning.md.
Runs last among the weight rewrites: it reverses hoist_transposes for the linears it picks (the
checkpoint tensor itself when that was transposed) and transposes concatenated or folded weights.
"""

from compiler.kernels.matmul import in_out_one_row_fills
from compiler.passes.context import DEFAULT
from compiler.passes.patterns import transpose_linears


def wants_out_in(rules, op, in_out_shape, sms=(), writes_output=False):
    """Whether a linear (weight [in, out] now) is stored [out, in]: narrow outputs, gate+up, or,
    unless it writes a graph output (the LM head), outputs too few for [in, out] one-row tiles to
    fill the SMs of a target in `sms`."""
    in_features, features = in_out_shape
    return (features <= in_features or "silu_mul" in op.attrs.get("epilogue", ())
            or not (writes_output or all(in_out_one_row_fills(rules, sm, features) for sm in sms)))


def run(graph, context=DEFAULT):
    """Return a copy of `graph` whose narrow and gate+up linears (and, for the context's target
    SMs, those too narrow to fill them) read [out, in] weights."""
    graph = graph.copy()
    rules = context.tile_rules
    if context.max_batch > rules.out_in_max_batch:
        graph.log("store_out_in", f"weights stay [in, out]: batch {context.max_batch} decodes with MMA tiles")
        return graph
    outputs = set(graph.outputs.values())
    stored = transpose_linears(graph, lambda op: op.attrs.get("layout") == "in_out" and wants_out_in(
        rules, op, graph.weights[op.weights["weight"]].shape, context.sms, outputs.intersection(op.outputs)), "out_in")
    graph.log("store_out_in", f"{stored} linear weights stored as [out, in]")
    return graph
