"""benchmarks/quant_quality.py: teacher-forced logits and their comparison, on tiny NumPy plans."""

import numpy as np

from benchmarks.quant_quality import compare, teacher_forced_logits
from compiler.compile import CompileOptions, compile_plan
from runtime.generate import generate
from runtime.numpy_executor import NumpyExecutor
from runtime.plan import load_plan


def _executor(tmp_path, quant):
    path = str(tmp_path / f"{quant}.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", dtype="bfloat16", max_seq=64, prefill_buckets=(8,),
                                               quant=quant, group_size=32))
    return NumpyExecutor(load_plan(path))


def test_teacher_forced_logits_follow_the_greedy_run_and_quantization_moves_them(tmp_path):
    base, int4 = _executor(tmp_path, None), _executor(tmp_path, "int4")
    prompt = np.random.default_rng(0).integers(0, 100, size=8).tolist()
    continuation = generate(base, [prompt], 6, eos_token_ids=()).tokens[0]
    logits = teacher_forced_logits(base, prompt, continuation)
    assert logits.shape[0] == 6 and list(logits.argmax(axis=1)) == continuation  # greedy: each step's pick
    same = compare(logits, logits)
    assert same == {"relative_error_mean": 0.0, "relative_error_max": 0.0, "top1_agreement": 1.0}
    moved = compare(logits, teacher_forced_logits(int4, prompt, continuation))
    assert 0 < moved["relative_error_mean"] <= moved["relative_error_max"] and 0 <= moved["top1_agreement"] <= 1
