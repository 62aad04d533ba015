"""NumPy reference of templates/embed.py.jinja."""

import numpy as np

from runtime.kernels.shared import positions, row_stats
from runtime.plan_layout import STATS_GROUP


def embed(constants, tokens, start_pos, table, *rest):
    """out[r] = table[tokens[r]] (+ pos_table[start_pos[b] + s]); with row_stats, then its stats."""
    rest = list(rest)
    stats = rest.pop() if constants.get("row_stats") else None
    out = rest[-1]
    ids = tokens.read()
    batch, seq = ids.shape
    vocab = table.array.shape[0]
    values = table.read()[np.clip(ids.reshape(-1), 0, vocab - 1)]
    if constants["positions"]:
        pos_table = rest[0]
        values = values + pos_table.read()[positions(start_pos, batch, seq, pos_table.array.shape[0])]
    out.write(values)
    if stats is not None:
        stats.write(row_stats(out.read(), constants["row_stats"], constants.get("stats_group", STATS_GROUP)))
