"""Token (and learned position) embedding gather, optionally with row statistics:
templates/embed.py.jinja."""

from compiler.kernels.common import stats_half
from compiler.tiles import cdiv, pow2
from runtime.plan_layout import STATS_GROUP


def roles(constants):
    """tokens [B, S] i32, start_pos [B], table [V, d], (pos_table [P, d]), out [T, d], (stats)."""
    return ("tokens", "start_pos", "table", *(("pos_table",) if constants["positions"] else ()), "out",
            *(("stats",) if constants.get("row_stats") else ()))


def tiles(rules, sm, constants, shapes):
    """Up to 1024 columns a CTA, at least one row-statistics group."""
    return {"block": min(1024, pow2(shapes["out"][1], STATS_GROUP)), **stats_half(constants, shapes)}


def grid(constants, shapes):
    """Rows x column blocks."""
    rows, width = shapes["out"]
    return (rows, cdiv(width, constants["block"]), 1)
