"""Lowering: what each program's launches read."""

from compiler import lower
from compiler.passes import infer_shapes, plan_buffers
from tests.conftest import small_graph


def test_prefill_matmuls_skip_rows_past_their_sequence_and_decode_ones_do_not(family):
    """Each prefill matmul reads its program's seq_lens (row_skip: a chunk prefilling a few of the
    plan's rows skips the others' row tiles); decode matmuls take neither."""
    graph = plan_buffers.run(infer_shapes.run(small_graph(family)))
    lowering = lower.Lowering(graph, max_batch=4, max_seq=64)
    for shape in lower.program_shapes(4, (8, 32)):
        program = lowering.lower_program(shape)
        matmuls = [launch for launch in program["launches"]
                   if lowering.kernels[launch["kernel"]]["template"] == "matmul"]
        assert matmuls
        for launch in matmuls:
            constants = lowering.kernels[launch["kernel"]]["constants"]
            if shape.seq == 1:
                assert "row_skip" not in constants
            else:
                assert constants["row_skip"] is True
                assert launch["args"][1] == program["inputs"]["seq_lens"]
