"""runtime.generate's host-side checks: a request the plan cannot serve raises InputError naming
what is wrong, before anything runs; a prompt that exactly fills the plan still generates."""

import re

import pytest

from compiler.compile import CompileOptions, compile_plan
from runtime.errors import InputError
from runtime.generate import generate
from runtime.numpy_executor import NumpyExecutor
from runtime.plan import load_plan
from runtime.sampling import SamplingParams

MAX_SEQ = 16


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("generate") / "llama.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", max_batch=2, max_seq=MAX_SEQ, prefill_buckets=(4,)))
    return NumpyExecutor(load_plan(path))


@pytest.mark.parametrize("prompts, new_tokens, message", [
    ([], 4, "no prompt given"),
    ([[]], 4, "prompt 0 is empty"),
    ([[1, 2], []], 4, "prompt 1 is empty"),
    ([[1] * 10, [1]], 7, "prompt 0 has 10 tokens + 7 new tokens, more than the plan's max sequence 16"),
    ([[1]] * 3, 1, "3 prompts exceed the plan's max batch 2"),
    ([[1, -1]], 1, "prompt 0 has token id -1 outside the vocabulary"),
])
def test_unservable_request_raises_input_error(executor, prompts, new_tokens, message):
    with pytest.raises(InputError, match=re.escape(message)):
        generate(executor, prompts, new_tokens)


def test_invalid_sampling_raises_input_error(executor):
    with pytest.raises(InputError, match="invalid sampling parameters"):
        generate(executor, [[1, 2]], 2, sampling=SamplingParams(temperature=1.0, top_p=0.0))


def test_prompt_filling_the_plan_generates(executor):
    result = generate(executor, [[1] * 10, [2, 3]], MAX_SEQ - 10, eos_token_ids=())
    assert [len(tokens) for tokens in result.tokens] == [MAX_SEQ - 10] * 2
    assert result.finish_reasons == ["length", "length"]
