"""Each sequence's last row of a prefill chunk, for the LM head: templates/last_rows.py.jinja."""

from compiler.tiles import cdiv, pow2

BLOCK = 1024  # most columns a CTA copies


def roles(constants):
    """x [B*seq, W], seq_lens [B], out [B, W]."""
    return ("x", "seq_lens", "out")


def tiles(rules, sm, constants, shapes):
    """One power-of-two block of columns per CTA."""
    return {"block": min(BLOCK, pow2(shapes["x"][1]))}


def grid(constants, shapes):
    """Sequences x column blocks."""
    return (shapes["out"][0], cdiv(shapes["x"][1], constants["block"]), 1)
