"""Pack activations into one arena: liveness intervals over op order, best-fit by size.

Every activation is [T, N], so it is planned per token row: a tensor takes `N * itemsize` bytes
of each row's slice of the arena, and a program with T rows places it at `T * row_offset`.
One layout thus serves every program (prefill buckets and decode). Program inputs and graph
outputs live outside the arena (io region); views share their base's storage and extend its
lifetime. Records offsets, the arena's bytes per row and the naive sum (no reuse).
Order: last, on the re-validated graph.
"""

from compiler.passes.context import DEFAULT
from runtime.dtypes import itemsize

ROW_ALIGN = 16  # bytes; T * offset stays 16-byte aligned for vector loads


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with `graph.buffers` set (row offsets, liveness, sizes)."""
    graph = graph.copy()
    intervals = liveness(graph)
    sizes = {name: _row_bytes(graph.tensors[name]) for name in intervals}
    requests = [(name, start, end, sizes[name]) for name, (start, end) in intervals.items()]
    offsets, arena_row_bytes = pack(requests)
    naive = sum(_align(size) for size in sizes.values())
    graph.buffers = {"row_offsets": offsets, "arena_row_bytes": arena_row_bytes,
                     "naive_row_bytes": naive, "liveness": intervals}
    saving = 100.0 * (1 - arena_row_bytes / naive) if naive else 0.0
    graph.log("plan_buffers", f"{len(offsets)} activations in {arena_row_bytes} B/row "
                              f"(naive {naive} B/row, {saving:.0f}% saved)")
    return graph


def liveness(graph):
    """Map each arena tensor to (first op index, last op index) it must stay intact for."""
    excluded = set(graph.inputs) | set(graph.outputs.values())
    intervals = {}

    def touch(name, index):
        tensor = graph.tensors[name]
        base = tensor.view_of[0] if tensor.view_of else name
        if base in excluded:
            return
        start, end = intervals.get(base, (index, index))
        intervals[base] = (min(start, index), max(end, index))

    for index, op in enumerate(graph.ops):
        for name in op.outputs:
            touch(name, index)
        for name in op.inputs.values():
            touch(name, index)
    return intervals


def pack(requests):
    """Place (name, start, end, size) requests so no two live at once share bytes.

    Largest first, each at the lowest aligned offset free of every placed request whose interval
    overlaps its own. Returns ({name: offset}, total bytes).
    """
    placed = []
    offsets = {}
    for name, start, end, size in sorted(requests, key=lambda r: (-r[3], r[1], r[0])):
        size = _align(size)
        conflicts = sorted((off, off + sz) for (s, e, off, sz) in placed if s <= end and start <= e)
        offset = 0
        for lo, hi in conflicts:
            if offset + size <= lo:
                break
            offset = max(offset, _align(hi))
        placed.append((start, end, offset, size))
        offsets[name] = offset
    total = max((off + sz for (_, _, off, sz) in placed), default=0)
    return offsets, total


def _row_bytes(tensor):
    return int(tensor.shape[1]) * itemsize(tensor.dtype)


def _align(size):
    return -(-size // ROW_ALIGN) * ROW_ALIGN
