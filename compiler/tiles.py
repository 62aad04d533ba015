"""Tile rules: every tiling and scheduling choice specialization makes, as one frozen value.

`SHIPPED` holds the measured choices (H100 unless said; the measurements behind each are in
docs/tuning.md). A plan compiles with `CompileOptions.tile_rules` (default SHIPPED); a variant is
`dataclasses.replace(SHIPPED, ...)`, from code or from `cgc compile --tiles FIELD=VALUE`
(parse_overrides). Kernel modules (compiler/kernels/<template>.py) read the rules; nothing reads
the environment. The one-row path: decode launches of one token row (batch-1 decode), whose
matmuls multiply without MMA (templates/matmul.py.jinja with TILE_M == 1).
"""

import ast
import dataclasses
from dataclasses import dataclass

from compiler.errors import CompileError
from compiler.targets import ASSUMED_SM_COUNT, REFERENCE_SM_COUNTS


@dataclass(frozen=True)
class TileRules:
    """Tiling and scheduling choices; see SHIPPED for the values and their one-line reasons."""

    decode_rows: int
    mma_decode: dict
    wide_decode_columns: int
    wide_decode: dict
    deep_k: int
    one_row: dict
    one_row_hints: dict
    out_in_rows: tuple
    out_in_k: dict
    out_in_deep_fill: float
    in_out_one_row_fill: float
    int4_group_acc_steps: int
    out_in_max_batch: int
    decode_attention: dict
    kv_splits: int
    kv_split_min_tiles: int
    kv_split_ctas: int
    prefill_tile_k: int
    prefill_candidates: tuple
    prefill_gate_up_candidates: tuple
    prefill_attention: dict
    row_elements: int
    sm_counts: dict


SHIPPED = TileRules(
    # launches of at most this many token rows count as decode-shaped
    decode_rows=16,
    # decode MMA tiles: 32 columns put 2x the CTAs of 64 on the weight; 256-deep K steps halve the loads
    mma_decode={"tile_m": 16, "tile_n": 32, "tile_k": 256},
    # wider decode matmuls (LM heads): 16x128x128 at two CTAs per SM reads them at copy bandwidth
    wide_decode_columns=16384,
    wide_decode={"tile_m": 16, "tile_n": 128, "tile_k": 128, "occupancy": 2},
    # from this K: MMA decode weight loads take latency hint 4 (else 2), one-row [K, N] tiles 512 deep
    deep_k=2048,
    # one-row tiles, latency hint 1: each kernel triggers its successor after its wait
    one_row={"tile_m": 1, "tile_n": 32, "weight_latency": 1},
    # dtypes on the one-row path and their hints; float32 (test plans) keeps one CTA per SM
    one_row_hints={"float16": {"occupancy": 2}, "bfloat16": {"occupancy": 2}, "float32": {}},
    # whole [N, K] weight rows per one-row CTA: the fewest that keep the CTAs within the SMs' slots
    out_in_rows=(8, 16, 32),
    # their K steps (below deep_k, from it: 8 rows step 1024 where CTAs cover out_in_deep_fill)
    out_in_k={8: (512, 1024), 16: (256, 256), 32: (256, 256)},
    out_in_deep_fill=0.875,
    # batch-1 plans store [out, in] linears whose one-row [in, out] tiles cover less of the SMs
    in_out_one_row_fill=0.875,
    # one-row int4 K steps of 2..this many groups, K from deep_k, load each group apart into one
    # group-wide accumulator (H200 Llama-3.2-1B gate+up 19.2 -> 14.2 us; 8 groups a step ran 2x
    # slower; Qwen3-0.6B's 1024-deep q/k/v 3.2 -> 4.4 us)
    int4_group_acc_steps=2,
    # plans of more sequences keep [in, out]: their decode MMA tiles read it faster
    out_in_max_batch=1,
    # decode attention hints: two CTAs per SM (128 registers instead of 255)
    decode_attention={"occupancy": 2},
    # decode attention splits each head's cache tiles over up to kv_splits CTAs, for caches of at
    # least kv_split_min_tiles tiles (below, the merge launch costs what splitting saves), within
    # kv_split_ctas CTAs a launch (sequences x heads x splits)
    kv_splits=8,
    kv_split_min_tiles=8,
    kv_split_ctas=256,
    # prefill: 64 deep; (tile_m, tile_n, efficiency, CTAs per SM), fewest weighted wave-elements wins
    prefill_tile_k=64,
    prefill_candidates=((128, 128, 1.0, 2), (64, 128, 0.9, 1), (64, 64, 0.7, 1)),
    # gate+up holds two accumulators: 128x128 spilled ~560 B a thread; 128x64 ran 3.5-4.1x faster
    prefill_gate_up_candidates=((128, 64, 1.0, 2), (64, 128, 0.95, 2), (64, 64, 0.7, 1)),
    # prefill attention (query rows, keys a step) by head block: 128 query rows for 16-bit heads of up
    # to 64; float32 (TF32) heads take 64 x 64 (ran fastest)
    prefill_attention={64: (128, 64), 128: (64, 64)},
    # a row-kernel CTA handles about this many elements (8 LayerNorm rows of 1024 beat 4 or 1)
    row_elements=8192,
    # SMs per target SM: the reference device's (compiler/targets.py) unless --gpu / --sm SM:COUNT
    sm_counts=REFERENCE_SM_COUNTS,
)


def parse_overrides(items, rules=SHIPPED):
    """`rules` with FIELD=VALUE items (Python literals, e.g. `kv_splits=4` or
    `decode_attention={'occupancy': 1}`) replaced; CompileError names a bad item."""
    fields = {field.name for field in dataclasses.fields(TileRules)}
    changes = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise CompileError(f"--tiles {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise CompileError(f"--tiles {item!r}: {text.strip()!r} is not a Python literal") from None
        if type(value) is not type(getattr(rules, name)) and not (isinstance(value, int) and
                                                                   isinstance(getattr(rules, name), float)):
            raise CompileError(f"--tiles {item!r}: {name} takes a {type(getattr(rules, name)).__name__}, "
                               f"got {type(value).__name__}")
        changes[name] = value
    return dataclasses.replace(rules, **changes)


def shape_class(rules, rows):
    """'decode' for few token rows, else 'prefill'."""
    return "decode" if rows <= rules.decode_rows else "prefill"


def pow2(value, minimum=1):
    """Smallest power of two >= max(value, minimum)."""
    result = 1
    while result < max(value, minimum):
        result *= 2
    return result


def cdiv(a, b):
    """Ceiling of a / b."""
    return -(-a // b)


def sm_count(rules, sm):
    """SMs the target of compute capability `sm` has, as the rules assume them."""
    return rules.sm_counts.get(sm, ASSUMED_SM_COUNT)


def covers_sms(rules, sm, ctas, fraction):
    """Whether `ctas` CTAs (one per SM) cover at least `fraction` of the SMs of `sm`."""
    return ctas >= fraction * sm_count(rules, sm)


def rows_per_cta(rules, block):
    """Rows a row-kernel CTA takes for `block`-wide rows (1 to 16)."""
    return max(1, min(16, rules.row_elements // block))
