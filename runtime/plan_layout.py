"""Layout constants of plan operands that the compiler writes and the runtime reads.

Part of the plan format (runtime/plan.py): the compiler imports these, never the other way.
"""

STATS_GROUP = 32  # columns per partial sum of a row-statistics tensor (prefill programs)
DECODE_STATS_GROUP = 8  # in decode programs: a one-row matmul CTA writes 8 output columns
ARGMAX_GROUP = 32  # columns per (largest value, its first id) pair a logits matmul writes
EOS_SLOTS = 8  # end-of-sequence ids the on-device sampler checks (the `eos` operand, padded with -1)


def stats_width(width, norm, group=STATS_GROUP):
    """Columns of the row statistics of `width` columns: G = ceil(width / group) sums of squares,
    or for LayerNorm 2P (P = G rounded up to a power of two): squares in [0, P), sums in [P, 2P)."""
    groups = -(-int(width) // group)
    return 2 * (1 << (groups - 1).bit_length()) if norm == "layernorm" else groups


def argmax_width(width):
    """Pairs per logits row of `width` columns: one per ARGMAX_GROUP-column group."""
    return -(-int(width) // ARGMAX_GROUP)
