"""NumPy implementations of every kernel template: the semantic reference for the GPU kernels.

One function per template (contract: templates/README.md), each taking the kernel's constants and
its operands as `View`s. Computation is float32; values round to the operand dtype when written,
as the GPU kernels' stores do.
"""

import math

import numpy as np

from runtime.dtypes import from_float32, itemsize, storage_dtype, to_float32


class View:
    """A strided window onto a region (one kernel operand)."""

    def __init__(self, regions, operand):
        self.dtype = operand["dtype"]
        size = itemsize(self.dtype)
        self.array = np.ndarray(tuple(operand["shape"]), dtype=storage_dtype(self.dtype),
                                buffer=regions[operand["region"]], offset=operand["offset"],
                                strides=tuple(s * size for s in operand["strides"]))

    def read(self):
        """Values as float32 (int32 operands as int64)."""
        if self.dtype == "int32":
            return self.array.astype(np.int64)
        return to_float32(self.array, self.dtype)

    def write(self, values):
        """Store values, rounding to the operand's dtype."""
        self.array[...] = from_float32(values, self.dtype) if self.dtype != "int32" else values


def _positions(start_pos, batch, seq, limit):
    positions = start_pos.read()[:, None] + np.arange(seq)[None, :]
    return np.clip(positions, 0, limit - 1).reshape(-1)


def embed(constants, tokens, start_pos, table, *rest):
    """out[r] = table[tokens[r]] (+ pos_table[start_pos[b] + s]); with row_stats, then its stats."""
    rest = list(rest)
    stats = rest.pop() if constants.get("row_stats") else None
    out = rest[-1]
    ids = tokens.read()
    batch, seq = ids.shape
    vocab = table.array.shape[0]
    values = table.read()[np.clip(ids.reshape(-1), 0, vocab - 1)]
    if constants["positions"]:
        pos_table = rest[0]
        values = values + pos_table.read()[_positions(start_pos, batch, seq, pos_table.array.shape[0])]
    out.write(values)
    if stats is not None:
        stats.write(row_stats(out.read(), constants["row_stats"], constants.get("stats_group", STATS_GROUP)))


STATS_GROUP = 32  # columns per partial sum of a row-statistics tensor (prefill programs)
DECODE_STATS_GROUP = 8  # in decode programs: a one-row matmul CTA writes 8 output columns


ARGMAX_GROUP = 32  # columns per (largest value, its first id) pair a logits matmul writes


def argmax_width(width):
    """Pairs per logits row of `width` columns: one per ARGMAX_GROUP-column group."""
    return -(-int(width) // ARGMAX_GROUP)


def group_argmax(rows):
    """Per row and ARGMAX_GROUP-column group of `rows` [T, N]: the largest value and the first
    column holding it ([T, G] float32 and int64), as the greedy sampler reads them."""
    rows = np.asarray(rows, dtype=np.float32)
    groups = argmax_width(rows.shape[1])
    padded = np.full((rows.shape[0], groups * ARGMAX_GROUP), -np.inf, dtype=np.float32)
    padded[:, :rows.shape[1]] = rows
    padded = padded.reshape(rows.shape[0], groups, ARGMAX_GROUP)
    return padded.max(axis=2), padded.argmax(axis=2) + np.arange(groups) * ARGMAX_GROUP


def stats_width(width, norm, group=STATS_GROUP):
    """Columns of the row statistics of `width` columns: G = ceil(width / group) sums of squares,
    or for LayerNorm 2P (P = G rounded up to a power of two): squares in [0, P), sums in [P, 2P)."""
    groups = -(-int(width) // group)
    return 2 * (1 << (groups - 1).bit_length()) if norm == "layernorm" else groups


def row_stats(rows, norm, group=STATS_GROUP):
    """The row statistics (layout: stats_width) of the stored rows; unused groups are zero."""
    width = rows.shape[1]
    groups = stats_width(width, norm, group) // (2 if norm == "layernorm" else 1)
    padded = np.zeros((rows.shape[0], groups * group), dtype=np.float32)
    padded[:, :width] = rows
    padded = padded.reshape(rows.shape[0], groups, group)
    parts = [(padded * padded).sum(axis=2)]
    if norm == "layernorm":
        parts.append(padded.sum(axis=2))
    return np.concatenate(parts, axis=1)


def norm_rstd(stats, width, norm, eps):
    """Per-row 1/sqrt(var + eps) ([T, 1]) from row statistics (see row_stats) of `width` columns."""
    stats = stats.astype(np.float32)
    if norm == "layernorm":
        groups = stats.shape[1] // 2
        mean = stats[:, groups:].sum(axis=1, keepdims=True) / width
        spread = np.maximum(stats[:, :groups].sum(axis=1, keepdims=True) / width - mean * mean, 0.0)
    else:
        spread = stats.sum(axis=1, keepdims=True) / width
    return 1.0 / np.sqrt(spread + eps)


def _layernorm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _rmsnorm(x, weight, eps, group):
    rows = x.reshape(x.shape[0], -1, group)
    normed = rows / np.sqrt((rows * rows).mean(axis=-1, keepdims=True) + eps) * weight
    return normed.reshape(x.shape)


def layernorm(constants, x, weight, bias, out):
    """LayerNorm over each row."""
    out.write(_layernorm(x.read(), weight.read(), bias.read(), constants["eps"]))


def rmsnorm(constants, x, weight, out):
    """RMSNorm over each run of `group` columns."""
    out.write(_rmsnorm(x.read(), weight.read(), constants["eps"], constants["group"]))


def add_norm(constants, a, b, weight, *rest):
    """sum = a + b (rounded to storage), norm_out = norm(sum)."""
    sum_out, norm_out = rest[-2], rest[-1]
    sum_out.write(a.read() + b.read())
    total = sum_out.read()
    if constants["norm"] == "layernorm":
        norm_out.write(_layernorm(total, weight.read(), rest[0].read(), constants["eps"]))
    else:
        norm_out.write(_rmsnorm(total, weight.read(), constants["eps"], total.shape[1]))


def _round(values, dtype):
    """Values as stored in `dtype` and read back (what a kernel's intermediate store would keep)."""
    return to_float32(from_float32(values, dtype), dtype) if dtype != "float32" else np.asarray(values, np.float32)


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _silu(x):
    return x / (1.0 + np.exp(-x))


def matmul(constants, x, *rest):
    """out = epilogue(prologue(x) @ weight), steps in order (see templates/README.md); a prologue
    reads `stats` after x, row_stats writes the output's statistics after out."""
    operands = list(rest)
    argmax = (operands.pop(-2), operands.pop()) if constants.get("row_argmax") else None
    stats_out = operands.pop() if constants.get("row_stats") else None
    out = operands.pop()
    rows = x.read()
    scale = None
    if constants.get("prologue"):  # a norm folded into the weights: scale rows by 1/sqrt(var + eps)
        scale = norm_rstd(operands.pop(0).read(), rows.shape[1], constants["prologue"], constants["eps"])
    flip = (lambda w: w.T) if constants.get("weight_layout") == "out_in" else (lambda w: w)  # [N, K] weights
    acc = rows @ flip(operands.pop(0).read())
    if "silu_mul" in constants["epilogue"]:
        up = rows @ flip(operands.pop(0).read())
    if scale is not None:
        acc = acc * scale
        if "silu_mul" in constants["epilogue"]:
            up = up * scale
    for step in constants["epilogue"]:
        if step == "bias":
            acc = acc + operands.pop(0).read()
        elif step == "gelu":
            acc = _gelu(acc)
        elif step == "silu_mul":
            acc = _silu(acc) * up
        elif step == "residual":
            acc = acc + operands.pop(0).read()
    out.write(acc)
    if stats_out is not None:
        stats_out.write(row_stats(out.read(), constants["row_stats"], constants.get("stats_group", STATS_GROUP)))
    if argmax is not None:  # of the stored (rounded) values, for the greedy sampler
        for view, values in zip(argmax, group_argmax(out.read())):
            view.write(values)


def merge_splits(outputs, lse, splits, head_dim):
    """Rows of attention output from split attention's partial results (see attention): `outputs`
    [T * splits, heads * head_dim], each split's heads over its keys, weighted by exp(`lse`)
    [T * splits, heads], the log of each split's softmax denominator (-1e30 for a split with no key)."""
    heads = outputs.shape[1] // head_dim
    outputs = outputs.reshape(-1, splits, heads, head_dim)
    lse = lse.reshape(-1, splits, heads)
    weights = np.exp(lse - lse.max(axis=1, keepdims=True))
    merged = (weights[..., None] * outputs).sum(axis=1) / weights.sum(axis=1)[..., None]
    return merged.reshape(-1, heads * head_dim).astype(np.float32)


def attention_merge(constants, partials, lse, out):
    """Split attention's partial results (attention with kv_splits) merged into its output rows."""
    out.write(merge_splits(partials.read(), lse.read(), constants["splits"], constants["head_dim"]))


def gelu(constants, x, out):
    """GELU, tanh approximation."""
    out.write(_gelu(x.read()))


def silu_mul(constants, gate, up, out):
    """silu(gate) * up."""
    out.write(_silu(gate.read()) * up.read())


def add(constants, a, b, out):
    """a + b."""
    out.write(a.read() + b.read())


def rope(constants, x, *rest):
    """Rotary embedding of each head (rotate_half convention) at position start_pos[b] + s, after
    a per-head RMSNorm (rounded to the storage dtype) when the spec has `norm_eps` (heads from
    `q_heads` on use `k_norm_weight`, for a merged q|k rope)."""
    heads, head_dim, seq = constants["heads"], constants["head_dim"], constants["seq"]
    scales = None
    if "norm_eps" in constants:
        norm_weight, *rest = rest
        scales = np.tile(norm_weight.read(), (heads, 1))
        if "q_heads" in constants:  # a merged q|k rope: k heads take the k norm
            k_norm_weight, *rest = rest
            scales[constants["q_heads"]:] = k_norm_weight.read()
    start_pos, cos, sin, out = rest
    out.write(_rotate(x.read(), head_dim, seq, start_pos, cos, sin, scales, constants.get("norm_eps"), x.dtype))


def _rotate(values, head_dim, seq, start_pos, cos, sin, scales, eps, dtype):
    """rope's rows: each head RMS-normalized by `scales` [heads, D] first when given (rounded to
    `dtype`), then rotated (rotate_half) at position start_pos[b] + s."""
    rows = values.shape[0]
    heads_view = values.reshape(rows, -1, head_dim)
    if scales is not None:
        rms = np.sqrt((heads_view * heads_view).mean(axis=-1, keepdims=True) + eps)
        heads_view = _round(heads_view / rms * scales, dtype)
    positions = _positions(start_pos, rows // seq, seq, cos.array.shape[0])
    c, s = cos.read()[positions][:, None, :], sin.read()[positions][:, None, :]
    half = head_dim // 2
    first, second = heads_view[..., :half], heads_view[..., half:]
    rotated = np.concatenate([first * c - second * s, second * c + first * s], axis=-1)
    return rotated.reshape(rows, -1)


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
        queries = _round(_rotate(queries, head_dim, seq, start_pos, cos, sin, q_scales, eps, q.dtype), q.dtype)
        keys = _round(_rotate(keys, head_dim, seq, start_pos, cos, sin, k_scales, eps, k.dtype), k.dtype)
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


SAMPLE_STEPS = 24  # bisection halvings, as templates/sample.py.jinja


def sample(constants, logits, start_pos, seq_lens, params, options, eos, history, next_tokens, next_start, next_lens,
           scratch, *argmax):
    """Choose each acting sequence's next token and feed it to the decode inputs (README.md).
    With `argmax` (the logits matmul's per-group largest values and their ids, see group_argmax),
    a greedy pick without penalty reads those instead of the logits row."""
    seq, prefill = constants["seq"], constants["phase"] == "prefill"
    lengths, starts = seq_lens.read(), start_pos.read()
    settings, choices = params.read(), options.read()
    stops = set(int(t) for t in eos.read()) - {-1}
    limit = history.array.shape[1]
    for b in range(len(lengths)):
        length = int(lengths[b])
        position = int(starts[b]) + length
        top_k, seed, prompt_len, cancel = (int(v) for v in choices[b])
        if length <= 0 or (prefill and position != prompt_len):
            continue
        if cancel:
            next_lens.array[b] = 0
            continue
        if position >= limit:
            next_lens.array[b] = 0
            continue
        row = b * seq + length - 1
        if argmax and settings[b][0] == 0 and settings[b][2] == 1:
            values, ids = argmax[0].read()[row], argmax[1].read()[row]
            chosen = int(ids[values == values.max()].min())
        else:
            chosen = _choose(logits.read()[row], settings[b], top_k, seed, position, history.array[b, :position])
        history.array[b, position] = next_tokens.array[b, 0] = chosen
        next_start.array[b] = position
        if chosen in stops:
            next_lens.array[b] = 0
        elif prefill:
            next_lens.array[b] = 1


def _choose(raw, settings, top_k, seed, position, seen):
    temperature, top_p, penalty = (np.float32(v) for v in settings[:3])
    x = raw.astype(np.float32).copy()
    if penalty != 1:
        ids = np.unique(seen)
        x[ids] = np.where(raw[ids] > 0, raw[ids] / penalty, raw[ids] * penalty)
    if temperature <= 0:
        return int(np.argmax(x))
    x = x / temperature
    best = x.max()
    threshold = x.min()
    if 0 < top_k < len(x):  # bisection for the k-th largest value, as the kernel does
        high = best
        for _ in range(SAMPLE_STEPS):
            middle = np.float32((threshold + high) * np.float32(0.5))
            if (x >= middle).sum() >= top_k:
                threshold = middle
            else:
                high = middle
    if top_p < 1:
        weights = np.exp(x - best)
        target = top_p * weights[x >= threshold].sum()
        high = best
        for _ in range(SAMPLE_STEPS):
            middle = np.float32((threshold + high) * np.float32(0.5))
            if weights[x >= middle].sum() >= target:
                threshold = middle
            else:
                high = middle
    ids = np.arange(len(x), dtype=np.uint32)
    score = np.where(x >= threshold, x - np.log(-np.log(hash_uniform(seed, position, ids))), -np.inf)
    return int(np.argmax(score))


def hash_uniform(seed, position, ids):
    """Uniform (0, 1) float32 per token id from a 32-bit multiply-xorshift hash of (seed, position,
    id), bit-identical to the sampler kernel's int32 arithmetic."""
    with np.errstate(over="ignore"):
        mixed = (ids.astype(np.uint32) * np.uint32(0x2C1B3C6D) + np.uint32(seed * 0x297A2D39 & 0xFFFFFFFF)
                 + np.uint32(position * 0x1B873593 & 0xFFFFFFFF))
        mixed ^= mixed >> np.uint32(16)
        mixed *= np.uint32(0x7FEB352D)
        mixed ^= mixed >> np.uint32(15)
        mixed *= np.uint32(0x6A09E667)
        mixed ^= mixed >> np.uint32(16)
    # 23 bits, so that the largest value plus 0.5 stays below 2^23 and u below 1.0 in fp32
    return (((mixed >> np.uint32(9)) & np.uint32(0x7FFFFF)).astype(np.float32) + np.float32(0.5)) / np.float32(8388608)


KERNELS = {
    "embed": embed, "layernorm": layernorm, "rmsnorm": rmsnorm, "add_norm": add_norm, "matmul": matmul,
    "gelu": gelu, "silu_mul": silu_mul, "add": add, "rope": rope, "attention": attention,
    "attention_merge": attention_merge, "sample": sample,
}
