"""NumPy reference of templates/attention_merge.py.jinja."""

import numpy as np


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
