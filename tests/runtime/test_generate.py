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
    ([[1, -1]], 1, "token id -1 is outside 0..2147483647"),
    ([[1, 1000]], 1, "prompt 0 has token id 1000 outside the vocabulary (0..999)"),
    ([[1, 2 ** 40]], 1, "token id 1099511627776 is outside"),
    ([[1, 2.7]], 1, "token ids must be integers, got 2.7"),
    ([[1, True]], 1, "token ids must be integers, got True"),
    ([1, 2], 1, "prompts must be a list of token-id lists"),
    ("hello", 1, "prompts must be a list of token-id lists, got str"),
    ([[1, 2]], -1, "max_new_tokens must be a non-negative integer, got -1"),
    ([[1, 2]], 2.5, "max_new_tokens must be a non-negative integer, got 2.5"),
])
def test_unservable_request_raises_input_error(executor, prompts, new_tokens, message):
    with pytest.raises(InputError, match=re.escape(message)):
        generate(executor, prompts, new_tokens)


@pytest.mark.parametrize("params, message", [
    (dict(temperature=1.0, top_p=0.0), "top_p must be finite and in (0, 1], got 0.0"),
    (dict(temperature=float("nan")), "temperature must be finite and >= 0, got nan"),
    (dict(temperature=-0.5), "temperature must be finite and >= 0"),
    (dict(top_p=float("inf")), "top_p must be finite"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be finite and > 0"),
    (dict(repetition_penalty=float("nan")), "repetition_penalty must be finite"),
    (dict(top_k=-1), "top_k must be in 0..2147483647, got -1"),
    (dict(top_k=2 ** 31), "top_k must be in 0..2147483647"),
    (dict(top_k=1.5), "top_k must be an integer"),
    (dict(seed=-3), "seed must be in 0..2147483647, got -3"),
    (dict(temperature="hot"), "temperature must be a number"),
])
def test_invalid_sampling_raises_input_error(executor, params, message):
    with pytest.raises(InputError, match=re.escape(message)):
        generate(executor, [[1, 2]], 2, sampling=SamplingParams(**params))


def test_bad_eos_and_stop_strings(executor):
    with pytest.raises(InputError, match="token ids must be integers"):
        generate(executor, [[1, 2]], 2, eos_token_ids=[1.5])
    with pytest.raises(InputError, match="stop strings must be a list of non-empty strings"):
        generate(executor, [[1, 2]], 2, stop_strings=[""])


def test_unknown_device_name(tmp_path):
    from runtime.session import open_plan
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        open_plan(str(tmp_path / "x.plan"), device="tpu")


def test_prompt_filling_the_plan_generates(executor):
    result = generate(executor, [[1] * 10, [2, 3]], MAX_SEQ - 10, eos_token_ids=())
    assert [len(tokens) for tokens in result.tokens] == [MAX_SEQ - 10] * 2
    assert result.finish_reasons == ["length", "length"]
