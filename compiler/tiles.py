"""Tile sizes per (SM, template, shape, dtype): the table specialization reads.

Keys are looked up most specific first: (sm, template, shape class), then (None, template,
shape class). Shape classes separate decode-shaped work (few token rows) from prefill-shaped
work, since the two want different tiles (see shared/DESIGN.md: 128x256x64 ran 10x slower than
128x128x64 on the same matmul). Values are template constants merged into the kernel spec.
"""

DECODE_ROWS = 16  # token rows at or below this count as decode-shaped

TABLE = {
    (None, "matmul", "decode"): {"tile_m": 16, "tile_n": 64, "tile_k": 128},
    (None, "matmul", "prefill"): {"tile_m": 128, "tile_n": 128, "tile_k": 64},
    (90, "matmul", "prefill"): {"tile_m": 128, "tile_n": 128, "tile_k": 64},
    (None, "attention", "decode"): {"tile_kv": 64},
    (None, "attention", "prefill"): {"tile_q": 64, "tile_kv": 64},
}


def shape_class(rows):
    """'decode' for few token rows, else 'prefill'."""
    return "decode" if rows <= DECODE_ROWS else "prefill"


def choose_tiles(sm, template, shapes, dtype):
    """Tile constants for a launch of `template` on `sm` with operand `shapes` (may be empty)."""
    rows = shapes[0][0] if shapes and shapes[0] else 1
    kind = shape_class(rows)
    for key in ((sm, template, kind), (None, template, kind)):
        if key in TABLE:
            return dict(TABLE[key])
    return {}
