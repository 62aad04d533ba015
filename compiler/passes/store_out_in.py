"""Store the weights of narrow linears (out features <= in features) and of merged gate+up
matmuls as [out, in] rows.

A one-row (batch-1 decode) matmul then gives each CTA a few whole output rows of the weight, so
a narrow projection spreads over 4x the CTAs of 32-column [in, out] tiles (templates/matmul:
`weight_layout`). H100, chains of 48 launches on cold weights: qwen3-0.6b down_proj 5.33 -> 3.45 us,
o_proj 3.41 -> 2.77, gate+up 7.05 -> 5.59; gpt2 mlp c_proj 4.98 -> 3.19. The wide projections
(qkv, GPT-2's c_attn and c_fc, LM heads) were as fast or faster as [in, out] alone; in the whole
decode step GPT-2's c_attn and c_fc, whose 32-column [in, out] tiles leave SMs idle, ran faster
[out, in] (compiler/tiles.py IN_OUT_GEMV_FILL), so plans that name target SMs store them so.
Whole batch-1 decode step at position 100 (benchmarks/decode_variants.py, in-out-weights without
this pass): gpt2 272.9 -> 235.1 us, qwen3-0.6b 969.3 -> 824.3 us.
Only plans for one sequence (max batch 1) store weights so: their decode takes the one-row path.
Plans for more sequences decode (and prefill) with MMA tiles, which read [in, out] weights faster:
H100, decode step at batch 8, position 100: qwen3-0.6b 986.3 us [out, in] vs 956.4 [in, out],
gpt2 301.0 vs 297.1.
Runs last among the weight rewrites: it reverses hoist_transposes for the linears it picks (the
checkpoint tensor itself when that was transposed) and transposes concatenated or folded weights.
"""

from compiler.passes.hoist_transposes import transpose_linears
from compiler.tiles import in_out_gemv_fills


def wants_out_in(op, in_out_shape, sms=(), writes_output=False):
    """Whether a linear (weight [in, out] now) is stored [out, in]: narrow outputs, gate+up, or,
    unless it writes a graph output (the LM head), outputs too few for [in, out] one-row tiles to
    fill the SMs of a target in `sms`."""
    in_features, features = in_out_shape
    return (features <= in_features or "silu_mul" in op.attrs.get("epilogue", ())
            or not (writes_output or all(in_out_gemv_fills(sm, features) for sm in sms)))


MAX_BATCH = 1  # plans for at most this many sequences store [out, in] weights


def run(graph, max_batch=1, sms=()):
    """Return a copy of `graph` whose narrow and gate+up linears (and, for target SMs `sms`, those
    too narrow to fill them) read [out, in] weights (a plan for up to `max_batch` sequences; above
    MAX_BATCH, the weights stay [in, out])."""
    graph = graph.copy()
    if max_batch > MAX_BATCH:
        graph.log("store_out_in", f"weights stay [in, out]: batch {max_batch} decodes with MMA tiles")
        return graph
    outputs = set(graph.outputs.values())
    stored = transpose_linears(graph, lambda op: op.attrs.get("layout") == "in_out" and wants_out_in(
        op, graph.weights[op.weights["weight"]].shape, sms, outputs.intersection(op.outputs)), "out_in")
    graph.log("store_out_in", f"{stored} linear weights stored as [out, in]")
    return graph
