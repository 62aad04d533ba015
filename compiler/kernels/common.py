"""Rules several kernel modules share (not a template)."""

from compiler.tiles import cdiv, pow2, rows_per_cta


def stats_half(constants, shapes):
    """Where LayerNorm row statistics keep their sums: the second half of the `stats` operand."""
    if constants.get("row_stats") != "layernorm":
        return {}
    return {"stats_half": shapes["stats"][1] // 2}


def row_tiles(rules, width):
    """A whole-row kernel's power-of-two block over `width` columns (the kernel masks the rest) and
    its rows per CTA."""
    block = pow2(width)
    return {"block": block, "rows": rows_per_cta(rules, block)}


def elementwise_tiles(rules, sm, constants, shapes):
    """Elementwise kernels: 16 rows of up to 256 columns a CTA."""
    return {"block": min(256, pow2(shapes["out"][1])), "rows": 16}


def elementwise_grid(constants, shapes):
    """Row tiles x column blocks."""
    rows, width = shapes["out"]
    return (cdiv(rows, constants["rows"]), cdiv(width, constants["block"]), 1)
