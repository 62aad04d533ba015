"""RMSNorm of each run of `group` columns (a whole row, or one head): templates/rmsnorm.py.jinja."""

from compiler.tiles import cdiv, pow2, rows_per_cta


def roles(constants):
    """x [T, d], weight [group], out [T, d]."""
    return ("x", "weight", "out")


def tiles(rules, sm, constants, shapes):
    """A power-of-two block over one group, several rows a CTA."""
    block = pow2(constants["group"])
    return {"block": block, "rows": rows_per_cta(rules, block)}


def grid(constants, shapes):
    """Row tiles x groups."""
    rows, width = shapes["x"]
    return (cdiv(rows, constants["rows"]), width // constants["group"], 1)
