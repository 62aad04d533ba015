"""NumPy reference of templates/attention.py.jinja."""

import numpy as np

from runtime.dtypes import from_float32, to_float32
from runtime.kernels.shared import rotate_heads, round_as_stored


def attention(constants, q, k, v, k_cache, v_cache, start_pos, seq_lens, *rest):
    """Append the real rows' k/v to the cache at their absolute positions, then causal attention of
    each real query row over its sequence's cache; padding rows get zeros. With `rope`, q and k
    are rotated first (rest: cos, sin, then with norm_eps the q and k norm weights), as the rope
    kernel would have stored them. With `kv_splits` (decode) the outputs are partial results per
    (row, split) instead (see merge_splits, attention_merge's merge): any partition of a row's keys
    over its splits merges to the same rows; this reference gives split 0 all of them."""
    heads, kv_heads, head_dim = constants["heads"], constants["kv_heads"], constants["head_dim"]
    seq, scale = constants["seq"], constants["scale"]
    group = heads // kv_heads
    splits = constants.get("kv_splits", 1)
    if splits > 1:
        *tables, partials, partial_lse = rest
        partial = np.zeros((partials.array.shape[0], heads, head_dim), np.float32)
        lse = np.full((partial_lse.array.shape[0], heads), -1.0e30, np.float32)
    else:
        *tables, out = rest
    queries, keys, values = q.read(), k.read(), v.read()
    if constants.get("rope"):
        cos, sin, *norms = tables
        eps = constants.get("norm_eps")
        q_scales, k_scales = ((np.tile(n.read(), (count, 1)) for n, count in zip(norms, (heads, kv_heads)))
                              if norms else (None, None))
        queries = round_as_stored(rotate_heads(queries, head_dim, seq, start_pos, cos, sin, q_scales, eps, q.dtype), q.dtype)
        keys = round_as_stored(rotate_heads(keys, head_dim, seq, start_pos, cos, sin, k_scales, eps, k.dtype), k.dtype)
    result = np.zeros_like(queries)
    starts, lengths = start_pos.read(), seq_lens.read()
    for b in range(len(starts)):
        for s in range(int(lengths[b])):
            row, position = b * seq + s, int(starts[b]) + s
            k_cache.array[b, :, position, :] = from_float32(keys[row].reshape(kv_heads, head_dim), k_cache.dtype)
            v_cache.array[b, :, position, :] = from_float32(values[row].reshape(kv_heads, head_dim), v_cache.dtype)
    for b in range(len(starts)):
        length, start = int(lengths[b]), int(starts[b])
        if length == 0:
            continue
        rows = slice(b * seq, b * seq + length)
        query = queries[rows].reshape(length, heads, head_dim).transpose(1, 0, 2)
        keys = np.repeat(to_float32(k_cache.array[b, :, :start + length], k_cache.dtype), group, axis=0)
        values = np.repeat(to_float32(v_cache.array[b, :, :start + length], v_cache.dtype), group, axis=0)
        scores = query @ keys.transpose(0, 2, 1) * scale
        causal = np.arange(start + length)[None, :] > (start + np.arange(length))[:, None]
        scores = np.where(causal[None], -np.inf, scores)
        top = scores.max(axis=-1, keepdims=True)
        scores = np.exp(scores - top)
        probs = scores / scores.sum(axis=-1, keepdims=True)
        if splits > 1:  # decode: one row, split 0 of row b
            lse[b * splits] = (top + np.log(scores.sum(axis=-1, keepdims=True)))[:, 0, 0]
            partial[b * splits] = (probs @ values)[:, 0]
            continue
        result[rows] = (probs @ values).transpose(1, 0, 2).reshape(length, heads * head_dim)
    if splits > 1:
        partials.write(partial.reshape(len(partial), heads * head_dim))
        partial_lse.write(lse)
        return
    out.write(result)
