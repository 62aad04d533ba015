"""The pass list: one visible order, every pass called the same way with the plan's context."""

import inspect

from compiler.passes import PIPELINE, PassContext, pass_name, run_pipeline
from tests.conftest import small_graph


def test_every_pass_takes_the_graph_and_a_context():
    for compiler_pass in set(PIPELINE):
        assert list(inspect.signature(compiler_pass.run).parameters) == ["graph", "context"], compiler_pass.__name__


def test_pipeline_runs_in_order_and_the_context_reaches_the_passes():
    seen = []
    one_row = run_pipeline(small_graph("qwen3"), PassContext(max_batch=1), progress=seen.append)
    assert seen == [pass_name(p) for p in PIPELINE] and seen[0] == seen[-3] == "infer_shapes"
    batched = run_pipeline(small_graph("qwen3"), PassContext(max_batch=8))
    layouts = [{op.attrs.get("layout") for op in graph.ops if op.kind == "linear"} for graph in (one_row, batched)]
    assert "out_in" in layouts[0] and layouts[1] == {"in_out"}
    assert one_row.buffers["arena_row_bytes"] > 0
