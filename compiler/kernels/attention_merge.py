"""Split decode attention's partial results merged into output rows: templates/attention_merge.py.jinja."""

from compiler.tiles import pow2


def roles(constants):
    """partials [T*splits, H*D] f32, partial_lse [T*splits, H] f32, out [T, H*D]."""
    return ("partials", "partial_lse", "out")


def tiles(rules, sm, constants, shapes):
    """One power-of-two block over a head."""
    return {"block_d": pow2(constants["head_dim"], 16)}


def grid(constants, shapes):
    """Rows x heads."""
    return (shapes["out"][0], constants["heads"], 1)
