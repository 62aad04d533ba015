"""Rotary embedding of each head, after an optional per-head RMSNorm: templates/rope.py.jinja."""

from compiler.tiles import pow2


def roles(constants):
    """x [T, H*D], (norm_weight [D], (k_norm_weight [D])), start_pos [B], cos, sin [P, D/2], out."""
    norms = ()
    if "norm_eps" in constants:
        norms = ("norm_weight", "k_norm_weight") if "q_heads" in constants else ("norm_weight",)
    return ("x", *norms, "start_pos", "cos", "sin", "out")


def tiles(rules, sm, constants, shapes):
    """Each head in two power-of-two halves."""
    return {"half_block": pow2(constants["head_dim"] // 2)}


def grid(constants, shapes):
    """Rows x heads."""
    return (shapes["x"][0], constants["heads"], 1)
