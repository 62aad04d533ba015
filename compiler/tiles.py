"""Tile sizes and block widths per (SM, template, launch shape, dtype): what specialization adds
to a kernel spec's constants before export.

Matmul tiles come from TABLE, most specific key first: (sm, shape class), then (None, shape
class). Decode-shaped work (few token rows) and prefill-shaped work want different tiles (see
shared/DESIGN.md: 128x256x64 ran 10x slower than 128x128x64 on the same matmul). Row kernels get
power-of-two blocks covering their (possibly odd) widths; the kernels mask the rest.
"""

import os

from runtime.plan_layout import ARGMAX_GROUP, STATS_GROUP  # columns per row-statistics sum / argmax pair

DECODE_ROWS = 16  # token rows at or below this count as decode-shaped

TABLE = {
    # decode (H100, one row): 32-column tiles put 2x the CTAs of 64-column ones on the weight and
    # 256-deep K steps halve the dependent loads; 16x32x256 beat 16x64x128 on every gpt2 and
    # qwen3-0.6b projection (e.g. qwen3 o_proj 7.0 -> 5.7 us, gpt2 mlp c_proj 9.5 -> 7.3 us).
    # 16-column tiles ran ~10x slower (32-byte TMA rows).
    (None, "decode"): {"tile_m": 16, "tile_n": 32, "tile_k": 256},
    (None, "prefill"): {"tile_m": 128, "tile_n": 128, "tile_k": 64},
}
# Decode matmuls wider than this (LM heads) have CTAs to spare: 16x64x128 read qwen3-0.6b's
# 311 MB LM head at 2.5-2.7 TB/s; 16x32x256 took 199 us instead of 126. 16x128x128 with two CTAs
# per SM (occupancy hint) reads it at 3.0 TB/s, the measured copy bandwidth (107 -> 103.5 us;
# gpt2's 77 MB head 29.1 -> 27.3 us); 64-column tiles, 256-deep steps, 3-4 CTAs per SM were slower.
WIDE_DECODE_COLUMNS = 16384
WIDE_DECODE = {"tile_m": 16, "tile_n": 128, "tile_k": 128, "occupancy": 2}
# Decode weight loads carry cuTile's `latency` hint (1-10, how heavy the DRAM traffic is), which
# sets how deep tileiras pipelines the weight stream of a CTA. H100, 16x32x256 tiles in chains of
# dependent launches: 2 where K < DEEP_K (gpt2 c_attn 3.05 -> 2.90 us, qwen3 gate_up 6.13 -> 5.51),
# 4 from DEEP_K on, where fewer CTAs each stream more K steps (gpt2 mlp c_proj 6.82 -> 6.18, qwen3
# down_proj 7.01 -> 5.95, o_proj 5.25 -> 4.55); 6 and 7 ran those up to 3x slower.
DEEP_K = 2048
# One token row (batch-1 decode) multiplies without MMA (templates/matmul.py.jinja, TILE_M == 1).
# H100, cold weights in chains of one kernel: gpt2's K=3072 projection 6.5 us with the 16x32x256
# MMA tile, 3.7 us with 1x32x512 (3.6 with 1x16x512, whose 16 columns would split a
# row-statistics group); the K=768 one 2.9 -> 2.2 us with 1x32x256 (2.4 with 512-deep steps).
# In the whole decode chain those kernels took a whole SM each (255 registers, 139-171 KB shared)
# and the gpt2 step ran slower (389.8 -> 436.0 us) until two CTAs fit an SM (float16 at occupancy
# 2: 366.7 us). Measured losses keep the MMA tile elsewhere: gate+up (silu_mul) ran 7.2 -> 11.1 us
# alone, and the bfloat16 qwen3-0.6b step ran 1156 -> 1631 us (2228 at occupancy 2), not yet
# understood. With late triggers and latency hint 1, bfloat16 at occupancy 2 runs that step
# faster (971.3 -> 954.2 us; another run 998 -> 951), as close to PyTorch's float32 logits as
# the MMA tiles (relative error 2.5e-2 vs 2.6e-2; the two differ by 2.3e-2, bfloat16 rounding).
# float32 (test plans) keeps one CTA per SM, as the GPU tests ran.
# One-row weight loads take latency hint 1: with each kernel triggering its successor after its
# wait, the gpt2 step ran 293.2 us at 4 (as the MMA tiles from DEEP_K), 293.0 at 3, 267.5 at 2,
# 264.9 at 1 (its matmul launches alone 230.1 -> 207.9 us). Loading 3 or 4 K steps of weights
# before the wait instead of 2 (the template's `prefetch`) ran every decode matmul slower (gpt2
# 295 -> 298 / 318 us, qwen3-0.6b 976 -> 1005 / 1158). Loading their x and residual rows and
# storing their output rows without TMA (allow_tma=False, which sped up decode attention's rows)
# ran both steps slower: qwen3-0.6b 761.9 -> 866.7 us, gpt2 226.6 -> 252.5. One kind of row at a
# time (decode_variants run 55, counting from 0): x loads 762.5 -> 844.2 us (gpt2 226.5 -> 246.2),
# residual loads 770.1 (239.7), statistics loads and output stores within noise (761.8 and 757.3;
# 228.4 and 225.4). Loading the residual tile before the wait (safe: its writer finishes before
# the kernel can launch) ran the matmul launches alone slower too (run 51: qwen3-0.6b 568.0 ->
# 580.5 us, step 755.7 -> 760.8; gpt2 231.8 -> 234.5), and decode attention's seq_lens loaded
# before its wait was neutral. None kept.
GEMV_DECODE = {"tile_m": 1, "tile_n": 32, "weight_latency": 1}
# One-row matmuls on [N, K] weights (passes/store_out_in: narrow projections, gate+up, and those
# IN_OUT_GEMV_FILL picks) give each CTA TILE_N whole weight rows: 8 where that keeps the CTAs
# within two per SM, else 16 or 32.
# H100, chains of 48 cold launches (us), 8 vs 16 rows per CTA: qwen3-0.6b down_proj 3.54 / 4.00,
# o_proj 2.77 / 2.92, gpt2 mlp c_proj 3.19 / 3.67; gate+up (3072 outputs) 9.05 at 8 (384 CTAs),
# 5.59 at 16. 512-deep K steps for 8 rows, 256 for 16 (gate+up 5.59 vs 6.33 at 512).
OUT_IN_ROWS = (8, 16, 32)
# K steps (rows: (below DEEP_K, from it)). From DEEP_K, 8-row tiles whose CTAs cover at least
# OUT_IN_DEEP_FILL of the SMs step 1024 deep: H100, decode step at position 100, qwen3-0.6b
# (o_proj K=2048 and down_proj K=3072, 128 CTAs each) 784.1 -> 762.9 us, 783.9 -> 761.7 in a second
# run, 776.1 -> 755.1 in a third (the matmul launches alone 610.5 -> 575.6), the gain down_proj's
# (o_proj alone at 1024: 786.1 -> 785.1); gpt2's mlp c_proj (K=3072, 96 CTAs) ran slower at 1024
# (236.1 -> 245.2 us). Slower too on qwen3-0.6b: down_proj 2048 deep (826.6), gate+up 512 or 128
# deep (+30, +22 us), qkv ([K, N] one-row tiles) 512 deep (+15); qkv 128 deep was within noise.
# Tried and not kept (decode step, H100, position 100; benchmarks/decode_variants.py JSON): the
# linear after decode attention reading the next linear's weights into L2 in tiles while it waits
# (qwen3-0.6b 785.3 -> 805.7 us, gpt2 235.5 -> 259.0), or letting the next kernel launch before
# it waits so its CTAs fetch their weights during the attention (784.4 -> 816.0, gpt2 +7.5).
OUT_IN_K = {8: (512, 1024), 16: (256, 256), 32: (256, 256)}
OUT_IN_DEEP_FILL = 0.875
# Batch-1 plans also store [out, in] the linears (LM heads aside) whose 32-column [in, out] one-row
# tiles would cover less than this fraction of the SMs (compiler/passes/store_out_in.py). H100,
# decode step at position 100: gpt2 (c_attn 72 CTAs, c_fc 96) 236.8 -> 226.5 us (c_attn alone
# 230.9, c_fc alone 235.7); qwen3-0.6b's qkv (128 CTAs) ran slower [out, in] (761.2 -> 779.0).
IN_OUT_GEMV_FILL = 0.875
# K steps of their weights loaded before the wait (None: the template's 2). Even after decode
# attention, which leaves most SMs idle for ~9 us, more ran slower: qwen3-0.6b step 825 us at 2,
# 893 at 4, 956 at all (up to 6); gpt2 236 at 2, 279 at all.
OUT_IN_PREFETCH = None
GEMV_HINTS = {"float16": {"occupancy": 2}, "bfloat16": {"occupancy": 2}, "float32": {}}  # dtypes on the path
GEMV_GATE_UP = {}  # dtype: tiles and hints of one-row gate+up matmuls on the path (none measured faster)
# Hints added to decode attention's tiles. H100, decode step as one chain at position 100:
# two CTAs per SM (128 registers instead of 255) took gpt2 from 346 to 295 us (its attention
# launches alone 68 -> 47 us) and qwen3-0.6b from 986 to 974; with it, 64-row KV tiles ran gpt2
# at 329 us. Rotating whole rows (q, k and their rotate_half partners fetched with ct.gather, so
# one reduction per norm and score: 72 barriers instead of 106) ran qwen3-0.6b's attention
# launches alone at 318 us instead of 242. Three CTAs per SM (80 registers, 69 KB shared instead
# of 85) ran both steps slower: gpt2 237.1 -> 239.8 us, qwen3-0.6b 789.0 -> 826.5. Fewer worker
# warps (num_worker_warps, 1 or 2 with tileiras 13.5) with 16- or 32-key tiles ran qwen3-0.6b at
# 905-1409 us (13.5's shipped rules: 789), gpt2 284-335 (246). Extra CTAs in the attention launch
# that read the next linears' weights into L2 while the heads attend (248 of them, 8 x 1024 tiles;
# tried, not kept) slowed the attention launches more than the matmuls gained: qwen3-0.6b step
# 789.7 -> 795.9 us (o_proj's 4 MB), 808.5 (+ gate+up, 17 MB), 858.9 (+ down, 23 MB); gpt2
# 235.8 -> 239.2 (1 MB), 289.9 (11 MB). Qwen3-0.6B with 128-key tiles (one tile at position 100)
# at one CTA per SM ran its attention launches alone faster (208.4 -> 176.9 us), the step slower
# (784.3 -> 819.5); retested with today's kernels (variants runs 53-54, positions 100 / 140): 761.1
# / 778.7 us shipped, 811.7 / 862.2 with 128-key tiles (812.6 / 860.1 at one CTA per SM), and
# 817.8 / 837.3 loading two cache tiles before the wait. Letting o_proj launch only as the
# attention CTAs exit (no early trigger) ran it 783.9 -> 827.4 us, and 857.9 with those 128-key tiles. Loading q's row with k's and v's right
# after the wait and writing the cache slot last (so no cache tile load waits on that store) ran
# the attention launches alone 207.1 -> 226.8 us, the qwen3-0.6b step 784.1 -> 802.0 (gpt2 +1.3).
# benchmarks/decode_variants.py times candidate entries of these tables on the GPU.
DECODE_ATTENTION = {"occupancy": 2}
# Decode attention splits each head's cache tiles over up to KV_SPLITS CTAs (tile t goes to split
# t % splits), each loading its first tile before the wait; an attention_merge launch combines the
# splits' partial results (lower.py _ProgramLowering._kv_splits). H100, batch 1, plans of 1024
# positions, decode step at position 900: qwen3-0.6b 1220.2 us with one CTA per head, 891.9 with
# 4 splits, 815.5 with 8; gpt2 319.9, 262.5, 249.0. Launches stay within KV_SPLIT_CTAS CTAs: at
# batch 8 (128 and 96 heads) 2 splits, qwen3-0.6b 1559.2 -> 1294.9 us at position 900 (947.4 ->
# 979.8 at 100), gpt2 420.0 -> 391.1 (293.3 -> 311.2). Plans whose cache holds fewer than
# KV_SPLIT_MIN_TILES tiles keep one CTA per head: the merge launch costs about 1.2 us a layer in
# the step (CUPTI timeline), about what splitting saves where one or two tiles follow the
# prefetched one: 256-position plans at position 100, qwen3-0.6b 761.8 -> 755.8 us split 4 ways
# (741.0 unsplit in another run), gpt2 226.4 -> 235.1 split 2 ways.
# Merging in the linear after the attention instead (each of its CTAs combining the splits' rows
# as it loads its input) ran that linear's launches 5 us slower each: 128 CTAs each re-read every
# split's partial rows (qwen3-0.6b step 914.7 us).
# Folding the linear after unsplit decode attention into it (no o_proj launch; CTAs per head and
# 128-column tile of its output, each multiplying its head's row by its weight block and adding
# the share as int64 fixed point, which the next linear read) ran qwen3-0.6b's step 760.2 ->
# 1106.4 us (attention launches alone 207.0 -> 382.2 us: 128 CTAs, 90 barriers each; matmul
# launches 576.3 -> 535.5) and gpt2's at par (231.3 us): variants run 52, not kept. Stores of the
# summed row inside the next linear's pipelined K loop hung its CTAs (tileiras 13.4).
KV_SPLITS = 8
KV_SPLIT_MIN_TILES = 8
KV_SPLIT_CTAS = 256  # at most this many CTAs in a split attention launch (sequences x heads x splits)
# Prefill candidates (tile_m, tile_n, relative per-element efficiency, CTAs per SM). Measured on
# the H100 (gpt2 fp16, M=1024): 128x128 tiles with two CTAs per SM (occupancy hint) ran the QKV,
# MLP-up and LM-head matmuls 11-18% faster than one CTA per SM; 64x128 is best for the N=768
# projections; 128x256 and 256x128 ran 10x slower (spills). The heuristic picks the candidate
# with the fewest weighted wave-elements.
PREFILL_CANDIDATES = ((128, 128, 1.0, 2), (64, 128, 0.9, 1), (64, 64, 0.7, 1))
SM_COUNT = {80: 108, 86: 84, 89: 128, 90: 132, 100: 148, 120: 84, 121: 48}
ROW_ELEMENTS = 8192  # a row-kernel CTA handles about this many elements (gpt2 LayerNorm: 8 rows
                     # of 1024 ran 30% faster than 4 rows, 1 row twice as slow)


def shape_class(rows):
    """'decode' for few token rows, else 'prefill'."""
    return "decode" if rows <= DECODE_ROWS else "prefill"


def pow2(value, minimum=1):
    """Smallest power of two >= max(value, minimum)."""
    result = 1
    while result < max(value, minimum):
        result *= 2
    return result


def _gemv_tiles(constants, depth):
    """Tiles of a one-row decode matmul on the no-MMA path, or None where it keeps the MMA tile:
    the path is taken where it was measured faster (16-bit without gate+up) and in float32 (test
    plans: the whole-model GPU parity tests cover the path)."""
    tiles = dict(GEMV_DECODE, tile_k=512 if depth >= DEEP_K else 256)
    if "silu_mul" in constants.get("epilogue", ()):
        hints = GEMV_GATE_UP.get(constants.get("dtype"))
    else:
        hints = GEMV_HINTS.get(constants.get("dtype"))
    return None if hints is None else {**tiles, **hints}


def in_out_gemv_fills(sm, columns):
    """Whether one-row [in, out] tiles of a `columns`-wide linear leave no SMs of `sm` idle (see
    IN_OUT_GEMV_FILL); LM heads (wider than WIDE_DECODE_COLUMNS) always count as filling them."""
    return columns > WIDE_DECODE_COLUMNS or _covers_sms(sm, _cdiv(columns, GEMV_DECODE["tile_n"]), IN_OUT_GEMV_FILL)


def _covers_sms(sm, ctas, fraction):
    """Whether `ctas` CTAs (one per SM) cover at least `fraction` of the SMs of `sm`."""
    return ctas >= fraction * SM_COUNT.get(sm, 132)


def _out_in_gemv_tiles(sm, columns, depth, dtype):
    """Tiles of a one-row decode matmul on [N, K] weights, K = `depth` (see OUT_IN_ROWS)."""
    hints = GEMV_HINTS.get(dtype, {})
    slots = SM_COUNT.get(sm, 132) * hints.get("occupancy", 1)
    tile_n = next((rows for rows in OUT_IN_ROWS if _cdiv(columns, rows) <= slots), OUT_IN_ROWS[-1])
    deep = depth >= DEEP_K and _covers_sms(sm, _cdiv(columns, tile_n), OUT_IN_DEEP_FILL)
    tiles = {**GEMV_DECODE, "tile_n": tile_n, "tile_k": OUT_IN_K[tile_n][deep], **hints}
    if OUT_IN_PREFETCH:
        tiles["prefetch"] = OUT_IN_PREFETCH
    return tiles


def _rows_for(block):
    return max(1, min(16, ROW_ELEMENTS // block))


def choose_tiles(sm, template, constants, shapes):
    """Constants to add to a spec of `template` launched on `sm` with operand `shapes`."""
    tiles = _chosen_tiles(sm, template, constants, shapes)
    if tiles:
        tiles.update(_generic_override(template, constants))
    return tiles


def _generic_override(template, constants):
    """CGC_TILES="attention.tile_q=32,layernorm.rows=2" (tuning runs; prefill-phase attention only)."""
    overrides = {}
    for item in filter(None, os.environ.get("CGC_TILES", "").split(",")):
        name, _, value = item.partition("=")
        owner, _, key = name.strip().partition(".")
        if owner == template and (template != "attention" or constants.get("phase") == "prefill"):
            overrides[key] = int(value)
    return overrides


def _chosen_tiles(sm, template, constants, shapes):
    rows = shapes[0][0] if shapes and shapes[0] else 1
    if template == "matmul":
        kind = shape_class(rows)
        columns = _matmul_out(constants, shapes)[1]
        tiles = dict(TABLE.get((sm, kind)) or TABLE[(None, kind)])
        if kind == "prefill" and (sm, kind) not in TABLE:
            tiles.update(_fill_waves(sm, rows, columns, constants.get("dtype")))
        if kind == "decode" and (sm, kind) not in TABLE:
            depth = shapes[0][1]
            if columns > WIDE_DECODE_COLUMNS:
                tiles.update(WIDE_DECODE)
            elif rows == 1 and constants.get("weight_layout") == "out_in":
                tiles.update(_out_in_gemv_tiles(sm, columns, shapes[0][1], constants.get("dtype")))
            elif rows == 1 and (gemv := _gemv_tiles(constants, depth)):
                tiles.update(gemv)
            else:
                tiles["weight_latency"] = 4 if depth >= DEEP_K else 2
        override = _override(kind)
        if override:  # an override names every hint it wants
            tiles.pop("occupancy", None)
            tiles.pop("weight_latency", None)
            tiles.update(override)
        if constants.get("dtype") == "float32":  # fp32 tiles are twice the bytes
            tiles["tile_k"] = min(tiles["tile_k"], 256 if tiles["tile_m"] == 1 else 32)
        if "prefetch" in tiles:  # weight tiles loaded before the wait: no more than the K steps
            tiles["prefetch"] = min(tiles["prefetch"], -(-shapes[0][1] // tiles["tile_k"]))
        if constants.get("prologue"):  # the row statistics tile a folded norm reads (see fold_norms)
            groups = shapes[1][1] // (2 if constants["prologue"] == "layernorm" else 1)
            tiles["stats_block"] = pow2(groups)
        if constants.get("row_argmax"):
            tiles["argmax_group"] = ARGMAX_GROUP
        if constants.get("row_stats") and tiles["tile_n"] % constants["stats_group"]:
            raise ValueError(f"matmul tile_n {tiles['tile_n']} must be a multiple of {constants['stats_group']} "
                             f"to store row statistics")
        if constants.get("row_argmax") and tiles["tile_n"] % ARGMAX_GROUP:
            raise ValueError(f"matmul tile_n {tiles['tile_n']} must be a multiple of {ARGMAX_GROUP} "
                             f"to store per-group maxima")
        tiles.update(_stats_half(constants, shapes))
        return tiles
    if template in ("layernorm", "add_norm"):
        block = pow2(shapes[0][1])
        return {"block": block, "rows": _rows_for(block)}
    if template == "rmsnorm":
        block = pow2(constants["group"])
        return {"block": block, "rows": _rows_for(block)}
    if template in ("gelu", "silu_mul", "add"):
        return {"block": min(256, pow2(shapes[0][1])), "rows": 16}
    if template == "embed":  # with row statistics the output precedes them
        out = shapes[_out_index(constants)]
        return {"block": min(1024, pow2(out[1], STATS_GROUP)), **_stats_half(constants, shapes)}
    if template == "rope":
        return {"half_block": pow2(constants["head_dim"] // 2)}
    if template == "attention_merge":
        return {"block_d": pow2(constants["head_dim"], 16)}
    if template == "sample":  # operands: logits, start_pos, seq_lens, params, options, eos, history, ...
        tiles = {"block": min(4096, pow2(shapes[0][1])), "history_block": min(1024, pow2(shapes[6][1])),
                 "eos_slots": pow2(shapes[5][0])}
        if constants.get("argmax_partials"):  # ..., scratch, argmax_values, argmax_ids
            tiles["argmax_block"] = min(4096, pow2(shapes[11][1]))
        return tiles
    if template == "attention":
        block_d = pow2(constants["head_dim"], 16)
        # Prefill on the H100 (gpt2 shapes, B8 S128): fp16 head_dim 64 ran attention in 142 us with
        # 128 query rows x 64 keys per step, 168 with 128x128, 218 with 64x64; fp32 (TF32) head_dim
        # 32 ran 58 us with 64x64, 72 with 128x128, 134 with 128x64. Larger heads keep 64 query
        # rows to stay within registers. Decode: 128 keys per step for head_dim <= 64.
        if constants["phase"] == "prefill":
            rows = 64 if constants["dtype"] == "float32" else (128 if block_d <= 64 else 64)
            return {"block_d": block_d, "tile_q": min(rows, pow2(constants["seq"], 16)), "tile_kv": 64}
        tiles = {"block_d": block_d, "tile_kv": decode_kv_tile(constants["head_dim"]), **DECODE_ATTENTION}
        if "kv_prefetch" in tiles:  # cache tiles loaded before the wait: no more than the cache holds
            tiles["kv_prefetch"] = min(tiles["kv_prefetch"], -(-shapes[3][2] // tiles["tile_kv"]))
        return tiles
    return {}


def decode_kv_tile(head_dim):
    """Cache positions per step of decode attention (DECODE_ATTENTION may name its own)."""
    return DECODE_ATTENTION.get("tile_kv", 128 if pow2(head_dim, 16) <= 64 else 64)


def decode_kv_splits(head_dim, max_seq, heads):
    """CTAs per head of decode attention over `heads` (sequences x heads) heads (see KV_SPLITS):
    1 for caches of fewer than KV_SPLIT_MIN_TILES tiles, else a power of two (attention_merge
    loads one row of each split) no larger than the cache's tiles or KV_SPLIT_CTAS / heads."""
    tiles, splits = _cdiv(max_seq, decode_kv_tile(head_dim)), 1
    if tiles < KV_SPLIT_MIN_TILES:
        return 1
    while splits * 2 <= min(KV_SPLITS, tiles, KV_SPLIT_CTAS // heads):
        splits *= 2
    return splits


def _out_index(constants):
    """Where an embed's or matmul's output sits: operands end out, (stats), (argmax_values, argmax_ids)."""
    return -1 - bool(constants.get("row_stats")) - 2 * bool(constants.get("row_argmax"))


def _matmul_out(constants, shapes):
    return shapes[_out_index(constants)]


def _stats_half(constants, shapes):
    """Where LayerNorm row statistics keep their sums: the second half of the stats operand, the
    one right after the output."""
    if constants.get("row_stats") != "layernorm":
        return {}
    return {"stats_half": shapes[_out_index(constants) + 1][1] // 2}


def _fill_waves(sm, rows, columns, dtype):
    """Prefill tile that keeps the SMs busiest: waves of CTAs times tile size over efficiency.
    Two CTAs per SM were measured with 16-bit tiles only; fp32 (TF32) tiles keep one."""
    def cost(candidate):
        tile_m, tile_n, efficiency, occupancy = candidate
        occupancy = 1 if dtype == "float32" else occupancy
        ctas = _cdiv(rows, tile_m) * _cdiv(columns, tile_n)
        return _cdiv(ctas, SM_COUNT.get(sm, 132) * occupancy) * tile_m * tile_n / efficiency

    tile_m, tile_n, _, occupancy = min(PREFILL_CANDIDATES, key=cost)
    tiles = {"tile_m": tile_m, "tile_n": tile_n}
    if occupancy > 1 and dtype != "float32":
        tiles["occupancy"] = occupancy
    return tiles


def _override(kind):
    """Matmul tiles from CGC_MATMUL_TILES="prefill=128x128x64:o2,decode=16x32x256" (tuning runs;
    ":oN" asks for N CTAs per SM, ":cN" for clusters of N CTAs, ":lN" weight-load latency N)."""
    for item in filter(None, os.environ.get("CGC_MATMUL_TILES", "").split(",")):
        name, _, spec = item.partition("=")
        if name.strip() != kind:
            continue
        sizes, *hints = spec.split(":")
        tile_m, tile_n, tile_k = (int(v) for v in sizes.split("x"))
        tiles = {"tile_m": tile_m, "tile_n": tile_n, "tile_k": tile_k}
        for hint in hints:
            tiles[{"o": "occupancy", "c": "num_ctas", "l": "weight_latency"}[hint[0]]] = int(hint[1:])
        return tiles
    return {}


def _cdiv(a, b):
    return -(-a // b)


def launch_grid(template, constants, shapes):
    """The (x, y, z) grid a specialized kernel expects for operand `shapes`."""
    rows = shapes[0][0]
    if template == "matmul":
        out = _matmul_out(constants, shapes)
        return (_cdiv(rows, constants["tile_m"]), _cdiv(out[1], constants["tile_n"]), 1)
    if template in ("layernorm", "add_norm"):
        return (_cdiv(rows, constants["rows"]), 1, 1)
    if template == "rmsnorm":
        return (_cdiv(rows, constants["rows"]), shapes[0][1] // constants["group"], 1)
    if template in ("gelu", "silu_mul", "add"):
        return (_cdiv(rows, constants["rows"]), _cdiv(shapes[0][1], constants["block"]), 1)
    if template == "embed":
        out = shapes[_out_index(constants)]
        return (out[0], _cdiv(out[1], constants["block"]), 1)
    if template == "rope":
        return (rows, constants["heads"], 1)
    if template == "attention":
        batch = shapes[5][0]  # start_pos
        if constants["phase"] == "prefill":
            return (_cdiv(constants["seq"], constants["tile_q"]), constants["heads"], batch)
        return (batch, constants["heads"], constants.get("kv_splits", 1))
    if template == "attention_merge":
        return (shapes[-1][0], constants["heads"], 1)  # out's rows
    if template == "sample":
        return (shapes[1][0], 1, 1)
    raise ValueError(f"no grid rule for template '{template}'")
