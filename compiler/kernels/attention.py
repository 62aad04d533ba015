"""Causal attention that appends this chunk's k/v rows to the KV cache: templates/attention.py.jinja.

Prefill: grid (query tiles, heads, batch). Decode: one query row per (sequence, head), optionally
rotating q and k itself (`rope`) and split over several CTAs per head (`kv_splits`, merged by an
attention_merge launch).
"""

from compiler.tiles import cdiv, pow2


def roles(constants):
    """q, k, v [T, *], k_cache, v_cache [B, KVH, P, D], start_pos, seq_lens [B], (cos, sin, (norm_weight,
    k_norm_weight)), then out [T, H*D], or with kv_splits partials and partial_lse."""
    rope = ()
    if constants.get("rope"):
        rope = ("cos", "sin", "norm_weight", "k_norm_weight") if "norm_eps" in constants else ("cos", "sin")
    outputs = ("partials", "partial_lse") if constants.get("kv_splits", 1) > 1 else ("out",)
    return ("q", "k", "v", "k_cache", "v_cache", "start_pos", "seq_lens", *rope, *outputs)


def tiles(rules, sm, constants, shapes):
    """Prefill: rules.prefill_attention's (query rows, keys a step) for the head block (the
    smallest entry holding it), float32 (TF32) 64 x 64. Decode: the cache tile of decode_kv_tile
    plus rules.decode_attention's hints."""
    block_d = pow2(constants["head_dim"], 16)
    if constants["phase"] == "prefill":
        choices = rules.prefill_attention
        rows, keys = (64, 64) if constants["dtype"] == "float32" else choices[
            min((d for d in choices if d >= block_d), default=max(choices))]
        return {"block_d": block_d, "tile_q": min(rows, pow2(constants["seq"], 16)), "tile_kv": keys}
    tiles = {"block_d": block_d, "tile_kv": decode_kv_tile(rules, constants["head_dim"]), **rules.decode_attention}
    if "kv_prefetch" in tiles:  # cache tiles loaded before the wait: no more than the cache holds
        tiles["kv_prefetch"] = min(tiles["kv_prefetch"], cdiv(shapes["k_cache"][2], tiles["tile_kv"]))
    return tiles


def grid(constants, shapes):
    """Prefill (query tiles, heads, batch); decode (batch, heads, splits)."""
    batch = shapes["start_pos"][0]
    if constants["phase"] == "prefill":
        return (cdiv(constants["seq"], constants["tile_q"]), constants["heads"], batch)
    return (batch, constants["heads"], constants.get("kv_splits", 1))


def decode_kv_tile(rules, head_dim):
    """Cache positions per step of decode attention: 128 for heads of up to 64, else 64
    (rules.decode_attention may name its own tile_kv)."""
    return rules.decode_attention.get("tile_kv", 128 if pow2(head_dim, 16) <= 64 else 64)


def decode_kv_splits(rules, head_dim, max_seq, heads):
    """CTAs per head of decode attention over `heads` (sequences x heads) heads: 1 for caches of
    fewer than kv_split_min_tiles tiles, else a power of two (attention_merge loads one row of
    each split) no larger than the cache's tiles, kv_splits or kv_split_ctas / heads."""
    tiles, splits = cdiv(max_seq, decode_kv_tile(rules, head_dim)), 1
    if tiles < rules.kv_split_min_tiles:
        return 1
    while splits * 2 <= min(rules.kv_splits, tiles, rules.kv_split_ctas // heads):
        splits *= 2
    return splits
