"""sum = a + b and its LayerNorm/RMSNorm, one pass over each row: templates/add_norm.py.jinja."""

from compiler.kernels.common import row_tiles
from compiler.tiles import cdiv


def roles(constants):
    """a, b [T, d], weight [d], (bias [d] for LayerNorm), sum_out, norm_out [T, d]."""
    bias = ("bias",) if constants["norm"] == "layernorm" else ()
    return ("a", "b", "weight", *bias, "sum_out", "norm_out")


def tiles(rules, sm, constants, shapes):
    """A power-of-two block over the row, several rows a CTA."""
    return row_tiles(rules, shapes["a"][1])


def grid(constants, shapes):
    """One CTA per `rows` rows."""
    return (cdiv(shapes["a"][0], constants["rows"]), 1, 1)
