"""An int4 weight dequantized into scratch, for prefill: templates/dequant.py.jinja.

Prefill matmuls of int4 linears read a float copy of the weight that this launch writes just
before them (compiler/lower.py), so each weight tile is dequantized once a chunk instead of once in
every row tile that multiplies by it.
"""

from compiler.tiles import cdiv

TILE_K = 256  # input features a CTA covers: whole int4 groups (32, 64, 128)
TILE_N = 64   # output features a CTA covers


def roles(constants):
    """codes, scale, minimum (as stored: runtime/quant.py), out (the float weight, same layout)."""
    return ("codes", "scale", "minimum", "out")


def tiles(rules, sm, constants, shapes):
    """A fixed [TILE_N, TILE_K] block of the weight per CTA."""
    return {"tile_k": TILE_K, "tile_n": TILE_N}


def grid(constants, shapes):
    """Blocks of output features x blocks of input features."""
    rows, columns = shapes["out"]
    features, depth = (rows, columns) if constants.get("weight_layout") == "out_in" else (columns, rows)
    return (cdiv(features, constants["tile_n"]), cdiv(depth, constants["tile_k"]), 1)
