"""NumPy helpers the kernel references share: row statistics, norms, activations, rotation."""

import math

import numpy as np

from runtime.dtypes import from_float32, to_float32
from runtime.plan_layout import STATS_GROUP, stats_width


def positions(start_pos, batch, seq, limit):
    """Absolute position of each of the batch * seq rows (start_pos[b] + s), clipped to the table."""
    at = start_pos.read()[:, None] + np.arange(seq)[None, :]
    return np.clip(at, 0, limit - 1).reshape(-1)


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


def layernorm_rows(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def rmsnorm_rows(x, weight, eps, group):
    rows = x.reshape(x.shape[0], -1, group)
    normed = rows / np.sqrt((rows * rows).mean(axis=-1, keepdims=True) + eps) * weight
    return normed.reshape(x.shape)


def round_as_stored(values, dtype):
    """Values as stored in `dtype` and read back (what a kernel's intermediate store would keep)."""
    return to_float32(from_float32(values, dtype), dtype) if dtype != "float32" else np.asarray(values, np.float32)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rotate_heads(values, head_dim, seq, start_pos, cos, sin, scales, eps, dtype):
    """rope's rows: each head RMS-normalized by `scales` [heads, D] first when given (rounded to
    `dtype`), then rotated (rotate_half) at position start_pos[b] + s."""
    rows = values.shape[0]
    heads_view = values.reshape(rows, -1, head_dim)
    if scales is not None:
        rms = np.sqrt((heads_view * heads_view).mean(axis=-1, keepdims=True) + eps)
        heads_view = round_as_stored(heads_view / rms * scales, dtype)
    at = positions(start_pos, rows // seq, seq, cos.array.shape[0])
    c, s = cos.read()[at][:, None, :], sin.read()[at][:, None, :]
    half = head_dim // 2
    first, second = heads_view[..., :half], heads_view[..., half:]
    rotated = np.concatenate([first * c - second * s, second * c + first * s], axis=-1)
    return rotated.reshape(rows, -1)
