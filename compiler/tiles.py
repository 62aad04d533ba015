"""Tile sizes and block widths per (SM, template, launch shape, dtype): what specialization adds
to a kernel spec's constants before export.

Matmul tiles come from TABLE, most specific key first: (sm, shape class), then (None, shape
class). Decode-shaped work (few token rows) and prefill-shaped work want different tiles (see
shared/DESIGN.md: 128x256x64 ran 10x slower than 128x128x64 on the same matmul). Row kernels get
power-of-two blocks covering their (possibly odd) widths; the kernels mask the rest.
"""

import os

DECODE_ROWS = 16  # token rows at or below this count as decode-shaped

TABLE = {
    (None, "decode"): {"tile_m": 16, "tile_n": 64, "tile_k": 128},
    (None, "prefill"): {"tile_m": 128, "tile_n": 128, "tile_k": 64},
}
# Prefill candidates, with a relative per-element efficiency of each tile (measured on the H100:
# 64x128 tiles ran the gpt2 layers 6% faster overall than 128x128; 128x256 and 256x128 ran 10x
# slower, spilling). The heuristic picks the candidate with the fewest weighted wave-elements.
PREFILL_CANDIDATES = ((128, 128, 1.0), (64, 128, 0.9), (64, 64, 0.7))
SM_COUNT = {80: 108, 86: 84, 89: 128, 90: 132, 100: 148, 120: 84, 121: 48}
ROW_ELEMENTS = 8192  # a row-kernel CTA handles about this many elements (gpt2 LayerNorm: 8 rows
                     # of 1024 ran 30% faster than 4 rows, 1 row twice as slow)


def shape_class(rows):
    """'decode' for few token rows, else 'prefill'."""
    return "decode" if rows <= DECODE_ROWS else "prefill"


def pow2(value, minimum=1):
    """Smallest power of two >= max(value, minimum)."""
    result = 1
    while result < max(value, minimum):
        result *= 2
    return result


def _rows_for(block):
    return max(1, min(16, ROW_ELEMENTS // block))


def choose_tiles(sm, template, constants, shapes):
    """Constants to add to a spec of `template` launched on `sm` with operand `shapes`."""
    tiles = _chosen_tiles(sm, template, constants, shapes)
    if tiles:
        tiles.update(_generic_override(template, constants))
    return tiles


def _generic_override(template, constants):
    """CGC_TILES="attention.tile_q=32,layernorm.rows=2" (tuning runs; prefill-phase attention only)."""
    overrides = {}
    for item in filter(None, os.environ.get("CGC_TILES", "").split(",")):
        name, _, value = item.partition("=")
        owner, _, key = name.strip().partition(".")
        if owner == template and (template != "attention" or constants.get("phase") == "prefill"):
            overrides[key] = int(value)
    return overrides


def _chosen_tiles(sm, template, constants, shapes):
    rows = shapes[0][0] if shapes and shapes[0] else 1
    if template == "matmul":
        kind = shape_class(rows)
        tiles = dict(TABLE.get((sm, kind)) or TABLE[(None, kind)])
        if kind == "prefill" and (sm, kind) not in TABLE:
            tiles.update(_fill_waves(sm, rows, shapes[-1][1]))
        tiles.update(_override(kind))
        if constants.get("dtype") == "float32":
            tiles["tile_k"] = min(tiles["tile_k"], 32)  # fp32 tiles are twice the bytes
        return tiles
    if template in ("layernorm", "add_norm"):
        block = pow2(shapes[0][1])
        return {"block": block, "rows": _rows_for(block)}
    if template == "rmsnorm":
        block = pow2(constants["group"])
        return {"block": block, "rows": _rows_for(block)}
    if template in ("gelu", "silu_mul", "add"):
        return {"block": min(256, pow2(shapes[0][1])), "rows": 16}
    if template == "embed":
        return {"block": min(1024, pow2(shapes[-1][1]))}
    if template == "rope":
        return {"half_block": pow2(constants["head_dim"] // 2)}
    if template == "kv_append":
        return {"block": pow2(constants["head_dim"]), "tile_s": min(64, pow2(constants["seq"]))}
    if template == "attention":
        block_d = pow2(constants["head_dim"], 16)
        # 128x128 score tiles were 15% faster than 64x64 for head_dim 64; larger heads keep 64
        # to stay within registers
        wide = 128 if block_d <= 64 else 64
        tiles = {"block_d": block_d, "tile_kv": wide if constants["phase"] == "prefill" else 64}
        if constants["phase"] == "prefill":
            tiles["tile_q"] = min(wide, pow2(constants["seq"], 16))
        return tiles
    return {}


def _fill_waves(sm, rows, columns):
    """Prefill tile that keeps the SMs busiest: waves of CTAs times tile size over efficiency."""
    slots = SM_COUNT.get(sm, 132)

    def cost(candidate):
        tile_m, tile_n, efficiency = candidate
        ctas = _cdiv(rows, tile_m) * _cdiv(columns, tile_n)
        return _cdiv(ctas, slots) * tile_m * tile_n / efficiency

    tile_m, tile_n, _ = min(PREFILL_CANDIDATES, key=cost)
    return {"tile_m": tile_m, "tile_n": tile_n}


def _override(kind):
    """Matmul tiles from CGC_MATMUL_TILES="prefill=128x128x64:o2,decode=16x64x128" (tuning runs;
    ":oN" asks for N CTAs per SM, ":cN" for clusters of N CTAs)."""
    for item in filter(None, os.environ.get("CGC_MATMUL_TILES", "").split(",")):
        name, _, spec = item.partition("=")
        if name.strip() != kind:
            continue
        sizes, *hints = spec.split(":")
        tile_m, tile_n, tile_k = (int(v) for v in sizes.split("x"))
        tiles = {"tile_m": tile_m, "tile_n": tile_n, "tile_k": tile_k}
        for hint in hints:
            tiles[{"o": "occupancy", "c": "num_ctas"}[hint[0]]] = int(hint[1:])
        return tiles
    return {}


def _cdiv(a, b):
    return -(-a // b)


def launch_grid(template, constants, shapes):
    """The (x, y, z) grid a specialized kernel expects for operand `shapes`."""
    rows = shapes[0][0]
    if template == "matmul":
        return (_cdiv(rows, constants["tile_m"]), _cdiv(shapes[-1][1], constants["tile_n"]), 1)
    if template in ("layernorm", "add_norm"):
        return (_cdiv(rows, constants["rows"]), 1, 1)
    if template == "rmsnorm":
        return (_cdiv(rows, constants["rows"]), shapes[0][1] // constants["group"], 1)
    if template in ("gelu", "silu_mul", "add"):
        return (_cdiv(rows, constants["rows"]), _cdiv(shapes[0][1], constants["block"]), 1)
    if template == "embed":
        return (shapes[-1][0], _cdiv(shapes[-1][1], constants["block"]), 1)
    if template == "rope":
        return (rows, constants["heads"], 1)
    if template == "kv_append":
        return (_cdiv(constants["seq"], constants["tile_s"]), constants["kv_heads"], shapes[2][0])
    if template == "attention":
        batch = shapes[3][0]
        if constants["phase"] == "prefill":
            return (_cdiv(constants["seq"], constants["tile_q"]), constants["heads"], batch)
        return (batch, constants["heads"], 1)
    raise ValueError(f"no grid rule for template '{template}'")
