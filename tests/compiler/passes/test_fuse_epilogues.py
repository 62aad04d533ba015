"""fuse_epilogues: bias, GELU, SiLU*up and residual adds move into matmul epilogues."""

from compiler.passes import concat_gate_up, fuse_epilogues, hoist_transposes, infer_shapes
from tests.conftest import small_graph
from tests.graph_exec import assert_same_logits, kinds


def test_fuse_epilogues_gpt2():
    graph = hoist_transposes.run(infer_shapes.run(small_graph("gpt2")))
    fused = fuse_epilogues.run(graph)
    assert "gelu" not in kinds(fused) and "add" not in kinds(fused)
    epilogues = [op.attrs["epilogue"] for op in fused.ops if op.kind == "linear"]
    assert epilogues[:3] == [("bias",), ("bias", "residual"), ("bias", "gelu")]
    assert epilogues[3] == ("bias", "residual")
    assert_same_logits(graph, fused)


def test_fuse_epilogues_swiglu_after_gate_up_concat():
    graph = concat_gate_up.run(hoist_transposes.run(infer_shapes.run(small_graph("llama"))))
    fused = fuse_epilogues.run(graph)
    assert "silu_mul" not in kinds(fused)
    gate_up = next(op for op in fused.ops if op.name.endswith("gate_up_proj"))
    assert gate_up.attrs["epilogue"] == ("silu_mul",)
    down = next(op for op in fused.ops if op.name.endswith("down_proj"))
    assert down.attrs["epilogue"] == ("residual",)
    assert_same_logits(graph, fused)


def test_fuse_epilogues_declines_shared_output():
    graph = infer_shapes.run(small_graph("llama"))
    # silu_mul's gate and up come from two linears (no concat): neither output has one consumer
    # of a fusable kind, so the linears keep empty epilogues.
    fused = fuse_epilogues.run(hoist_transposes.run(graph))
    gate = next(op for op in fused.ops if op.name.endswith("gate_proj"))
    assert gate.attrs["epilogue"] == ()
    assert "silu_mul" in kinds(fused)
