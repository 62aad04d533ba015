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
            if shape.seq == 1 or launch["op"] == "lm_head":  # a prefill's LM head reads B last rows
                assert "row_skip" not in constants
            else:
                assert constants["row_skip"] is True
                assert launch["args"][1] == program["inputs"]["seq_lens"]


def test_prefill_lm_head_reads_each_sequence_last_row_unless_prompt_logits(family):
    """A prefill's LM head reads the rows last_rows copied (x and, for a folded norm, its
    statistics) and writes [B, V] logits that the sampler reads row by row (last_rows); with
    prompt_logits it reads every row, as decode-free lowering did before."""
    graph = plan_buffers.run(infer_shapes.run(small_graph(family)))
    for prompt_logits in (False, True):
        lowering = lower.Lowering(graph, max_batch=4, max_seq=64, prompt_logits=prompt_logits)
        program = lowering.lower_program(lower.ProgramShape("prefill_32", 4, 32))
        templates = [lowering.kernels[launch["kernel"]]["template"] for launch in program["launches"]]
        head = next(i for i, launch in enumerate(program["launches"]) if launch["op"] == "lm_head"
                    and templates[i] == "matmul")
        sample = lowering.kernels[program["launches"][-1]["kernel"]]["constants"]
        logits = program["outputs"]["logits"]
        if prompt_logits:
            assert "last_rows" not in templates and "last_rows" not in sample
            assert logits["shape"][0] == 4 * 32
            continue
        copies = [i for i, template in enumerate(templates) if template == "last_rows"]
        assert copies and copies[-1] == head - 1 and sample["last_rows"] is True
        assert logits["shape"][0] == 4
        copied = [program["launches"][i]["args"][2] for i in copies]
        assert program["launches"][head]["args"][0] == copied[0]  # x
        assert all(operand["region"] == "scratch" and operand["shape"][0] == 4 for operand in copied)
        if len(copied) == 2:  # the folded final norm's statistics follow x
            assert program["launches"][head]["args"][1] == copied[1]
        assert lowering.scratch_bytes >= sum(o["shape"][0] * o["shape"][1] for o in copied)
