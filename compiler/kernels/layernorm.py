"""LayerNorm of each row: templates/layernorm.py.jinja."""

from compiler.kernels.common import row_tiles
from compiler.tiles import cdiv


def roles(constants):
    """x [T, d], weight [d], bias [d], out [T, d]."""
    return ("x", "weight", "bias", "out")


def tiles(rules, sm, constants, shapes):
    """A power-of-two block over the row, several rows a CTA."""
    return row_tiles(rules, shapes["x"][1])


def grid(constants, shapes):
    """One CTA per `rows` rows."""
    return (cdiv(shapes["x"][0], constants["rows"]), 1, 1)
