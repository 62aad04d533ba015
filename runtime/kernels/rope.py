"""NumPy reference of templates/rope.py.jinja."""

import numpy as np

from runtime.kernels.shared import rotate_heads


def rope(constants, x, *rest):
    """Rotary embedding of each head (rotate_half convention) at position start_pos[b] + s, after
    a per-head RMSNorm (rounded to the storage dtype) when the spec has `norm_eps` (heads from
    `q_heads` on use `k_norm_weight`, for a merged q|k rope). Rows past their sequence's length
    (seq_lens) are undefined; this reference rotates them too."""
    heads, head_dim, seq = constants["heads"], constants["head_dim"], constants["seq"]
    scales = None
    if "norm_eps" in constants:
        norm_weight, *rest = rest
        scales = np.tile(norm_weight.read(), (heads, 1))
        if "q_heads" in constants:  # a merged q|k rope: k heads take the k norm
            k_norm_weight, *rest = rest
            scales[constants["q_heads"]:] = k_norm_weight.read()
    start_pos, _seq_lens, cos, sin, out = rest
    out.write(rotate_heads(x.read(), head_dim, seq, start_pos, cos, sin, scales, constants.get("norm_eps"), x.dtype))
