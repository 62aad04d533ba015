"""out = epilogue(prologue(x) @ weight): templates/matmul.py.jinja.

Tiles by launch shape: prefill-shaped launches (more than rules.decode_rows rows) take the MMA
candidate that fills the SMs' waves best (gate+up its own candidates); decode-shaped ones MMA
tiles with a weight-load latency hint, LM heads (wide launches other than gate+up) wider tiles,
and one token row the one-row path (no MMA; TILE_M == 1) where it was measured faster: [K, N]
weights without gate+up in the dtypes of rules.one_row_hints, and [N, K] weights (store_out_in)
in whole weight rows per CTA.
"""

from compiler.tiles import cdiv, covers_sms, pow2, shape_class, sm_count
from compiler.kernels.common import stats_half
from runtime.plan_layout import ARGMAX_GROUP


def roles(constants):
    """x [T, K], (seq_lens [B]: row_skip), (norm_stats), weight [K, N] or [N, K] (quantized: codes,
    weight_scale, weight_min), (weight_up (, its scale and min)), (bias [N]), (residual), out [T, N],
    (stats), (argmax_values, argmax_ids)."""
    epilogue = constants.get("epilogue", ())
    names = ["x", *(("seq_lens",) if constants.get("row_skip") else ()),
             *(("norm_stats",) if constants.get("prologue") else ())]
    weights = ["weight", *quant_roles(constants)]
    names += weights
    if "silu_mul" in epilogue:
        names += [name.replace("weight", "weight_up") for name in weights]
    names += [role for step, role in (("bias", "bias"), ("residual", "residual")) if step in epilogue]
    names.append("out")
    if constants.get("row_stats"):
        names.append("stats")
    if constants.get("row_argmax"):
        names += ["argmax_values", "argmax_ids"]
    return tuple(names)


def quant_roles(constants):
    """The scale operands a quantized weight adds after its codes (runtime/quant.py)."""
    mode = constants.get("weight_quant")
    return () if mode is None else ("weight_scale", "weight_min") if mode == "int4" else ("weight_scale",)


def tiles(rules, sm, constants, shapes):
    """Tile sizes and hints (see the module docstring); checks that row statistics and argmax
    groups fit the column tiles."""
    rows, depth = shapes["x"]
    columns = shapes["out"][1]
    dtype = constants.get("dtype")
    gate_up = "silu_mul" in constants.get("epilogue", ())  # two accumulators: own prefill tiles, never wide
    if shape_class(rules, rows) == "prefill":
        candidates = rules.prefill_gate_up_candidates if gate_up else rules.prefill_candidates
        tiles = {"tile_k": rules.prefill_tile_k, **_fill_waves(rules, sm, rows, columns, dtype, candidates)}
    else:
        tiles = dict(rules.mma_decode)
        if rows == 1 and constants.get("weight_layout") == "out_in":  # before wide: a 7B's gate+up
            tiles.update(_out_in_one_row(rules, sm, columns, depth, dtype, constants))
        elif columns > rules.wide_decode_columns and not gate_up:
            tiles.update(rules.wide_decode)  # LM heads; a 7B's batch-8 gate+up spilled on them
        elif rows == 1 and not _stats_groups_over_one(constants, rules.one_row["tile_n"]) and (
                one_row := _one_row(rules, constants, depth)):
            tiles.update(one_row)
        else:
            tiles["weight_latency"] = 4 if depth >= rules.deep_k else 2
    if dtype == "float32":  # fp32 tiles are twice the bytes
        tiles["tile_k"] = min(tiles["tile_k"], 256 if tiles["tile_m"] == 1 else 32)
    if constants.get("quant_group"):  # a K step covers whole int4 groups
        tiles["tile_k"] = max(tiles["tile_k"], constants["quant_group"])
        if tiles["tile_m"] == 1 and depth >= rules.deep_k and (
                1 < tiles["tile_k"] // constants["quant_group"] <= rules.int4_group_acc_steps):
            tiles["int4_acc"] = "group"
    if "prefetch" in tiles:  # weight tiles loaded before the wait: no more than the K steps
        tiles["prefetch"] = min(tiles["prefetch"], cdiv(depth, tiles["tile_k"]))
    if constants.get("prologue"):  # the row statistics tile a folded norm reads (see fold_norms)
        groups = shapes["norm_stats"][1] // (2 if constants["prologue"] == "layernorm" else 1)
        tiles["stats_block"] = pow2(groups)
    if constants.get("row_argmax"):
        tiles["argmax_group"] = ARGMAX_GROUP
    if constants.get("row_stats") and tiles["tile_n"] % constants["stats_group"]:
        raise ValueError(f"matmul tile_n {tiles['tile_n']} must be a multiple of {constants['stats_group']} "
                         f"to store row statistics")
    if constants.get("row_argmax") and tiles["tile_n"] % ARGMAX_GROUP:
        raise ValueError(f"matmul tile_n {tiles['tile_n']} must be a multiple of {ARGMAX_GROUP} "
                         f"to store per-group maxima")
    tiles.update(stats_half(constants, shapes))
    return tiles


def grid(constants, shapes):
    """Row tiles x column tiles."""
    return (cdiv(shapes["x"][0], constants["tile_m"]), cdiv(shapes["out"][1], constants["tile_n"]), 1)


def in_out_one_row_fills(rules, sm, columns):
    """Whether one-row [K, N] tiles of a `columns`-wide linear leave no SMs of `sm` idle (see
    rules.in_out_one_row_fill); LM heads (wider than wide_decode_columns) always count as filling them."""
    return columns > rules.wide_decode_columns or covers_sms(
        rules, sm, cdiv(columns, rules.one_row["tile_n"]), rules.in_out_one_row_fill)


def _one_row(rules, constants, depth):
    """One-row tiles on [K, N] weights, or None where the launch keeps MMA tiles: gate+up, and
    dtypes without one_row_hints."""
    hints = rules.one_row_hints.get(constants.get("dtype"))
    if hints is None or "silu_mul" in constants.get("epilogue", ()):
        return None
    return {**rules.one_row, "tile_k": 512 if depth >= rules.deep_k else 256, **hints}


def _stats_groups_over_one(constants, tile_n):
    """Whether a one-row CTA of `tile_n` columns would store more than one row-statistics group:
    such kernels hung on the H200 (one group a CTA ran; docs/tuning.md), so they take other tiles."""
    return bool(constants.get("row_stats")) and tile_n > constants["stats_group"]


def _out_in_one_row(rules, sm, columns, depth, dtype, constants):
    """One-row tiles on [N, K] weights, K = `depth`: the fewest whole weight rows per CTA that keep
    the CTAs within the SMs' slots (see rules.out_in_rows, out_in_k); one statistics group a CTA
    where the launch stores row statistics."""
    hints = rules.one_row_hints.get(dtype, {})
    slots = sm_count(rules, sm) * hints.get("occupancy", 1)
    fitting = [rows for rows in rules.out_in_rows if not _stats_groups_over_one(constants, rows)] or [rules.out_in_rows[0]]
    tile_n = next((rows for rows in fitting if cdiv(columns, rows) <= slots), fitting[-1])
    deep = depth >= rules.deep_k and covers_sms(rules, sm, cdiv(columns, tile_n), rules.out_in_deep_fill)
    return {**rules.one_row, "tile_n": tile_n, "tile_k": rules.out_in_k[tile_n][deep], **hints}


def _fill_waves(rules, sm, rows, columns, dtype, candidates):
    """Prefill tile that keeps the SMs busiest: waves of CTAs times tile size over efficiency.
    Two CTAs per SM were measured with 16-bit tiles only; fp32 (TF32) tiles keep one."""
    def cost(candidate):
        tile_m, tile_n, efficiency, occupancy = candidate
        occupancy = 1 if dtype == "float32" else occupancy
        ctas = cdiv(rows, tile_m) * cdiv(columns, tile_n)
        return cdiv(ctas, sm_count(rules, sm) * occupancy) * tile_m * tile_n / efficiency

    tile_m, tile_n, _, occupancy = min(candidates, key=cost)
    tiles = {"tile_m": tile_m, "tile_n": tile_n}
    if occupancy > 1 and dtype != "float32":
        tiles["occupancy"] = occupancy
    return tiles
