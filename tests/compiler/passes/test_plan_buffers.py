"""The buffer planner never lets two simultaneously live buffers share bytes, and reuses memory."""

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.passes import fuse_epilogues, hoist_transposes, infer_shapes, plan_buffers
from compiler.passes.plan_buffers import ROW_ALIGN, pack
from tests.conftest import small_graph

requests = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 10), st.integers(1, 5000)), min_size=1, max_size=40,
).map(lambda items: [(f"t{i}", start, start + length, size) for i, (start, length, size) in enumerate(items)])


def _assert_no_live_overlap(requests, offsets):
    for i, (name_a, start_a, end_a, size_a) in enumerate(requests):
        assert offsets[name_a] % ROW_ALIGN == 0
        for name_b, start_b, end_b, size_b in requests[i + 1:]:
            if start_a <= end_b and start_b <= end_a:
                a0, b0 = offsets[name_a], offsets[name_b]
                assert a0 + size_a <= b0 or b0 + size_b <= a0, (name_a, name_b)


@settings(max_examples=300, deadline=None)
@given(requests)
def test_pack_never_overlaps_live_buffers(requests):
    offsets, total = pack(requests)
    _assert_no_live_overlap(requests, offsets)
    assert total >= max(offsets[name] + size for name, _, _, size in requests)


def test_pack_reuses_memory_of_dead_buffers():
    offsets, total = pack([("a", 0, 1, 1024), ("b", 2, 3, 1024), ("c", 1, 2, 512)])
    assert offsets["a"] == offsets["b"]
    assert total == 1536


def test_graph_arena_smaller_than_naive_and_consistent(family):
    graph = fuse_epilogues.run(hoist_transposes.run(infer_shapes.run(small_graph(family))))
    planned = plan_buffers.run(graph)
    buffers = planned.buffers
    assert 0 < buffers["arena_row_bytes"] < buffers["naive_row_bytes"]
    items = [(name, *buffers["liveness"][name], int(planned.tensors[name].shape[1]) * 4)
             for name in buffers["row_offsets"]]
    _assert_no_live_overlap(items, buffers["row_offsets"])
    assert all(name not in buffers["row_offsets"] for name in (*planned.inputs, *planned.outputs.values()))
    assert planned.pass_log[-1][0] == "plan_buffers"
