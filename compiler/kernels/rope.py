"""Rotary embedding of each head, after an optional per-head RMSNorm: templates/rope.py.jinja."""

from compiler.tiles import cdiv, pow2


def roles(constants):
    """x [T, H*D], (norm_weight [D], (k_norm_weight [D])), start_pos [B], seq_lens [B], cos, sin [P, D/2],
    out."""
    norms = ()
    if "norm_eps" in constants:
        norms = ("norm_weight", "k_norm_weight") if "q_heads" in constants else ("norm_weight",)
    return ("x", *norms, "start_pos", "seq_lens", "cos", "sin", "out")


TILE_ROWS = 32  # most rows a CTA rotates


def tiles(rules, sm, constants, shapes):
    """Each head in two power-of-two halves; a CTA takes the largest power-of-two tile of rows
    (at most TILE_ROWS) that divides seq, so a tile never spans two sequences."""
    rows = 1
    while rows < TILE_ROWS and constants["seq"] % (2 * rows) == 0:
        rows *= 2
    return {"half_block": pow2(constants["head_dim"] // 2), "tile_rows": rows}


def grid(constants, shapes):
    """Row tiles x heads."""
    return (cdiv(shapes["x"][0], constants["tile_rows"]), constants["heads"], 1)
