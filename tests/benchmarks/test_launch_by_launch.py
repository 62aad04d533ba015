"""launch_by_launch picks the smallest prefill program, then decode, when none are named."""

from benchmarks.experimental.launch_by_launch import default_programs
from compiler.compile import CompileOptions, compile_plan


def test_default_programs_are_the_smallest_prefill_then_decode(tmp_path):
    body = compile_plan("llama", str(tmp_path / "p.plan"),
                        CompileOptions(preset="tiny", max_seq=64, prefill_buckets=(32, 8, 16)))
    assert default_programs(body) == ["prefill_8", "decode"]
