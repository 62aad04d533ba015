"""Compiled plans on the NumPy executor match Hugging Face transformers (PyTorch, CPU, fp32).

Each family at a small random config with odd sizes (48/192 dims, vocab 50257, GQA ratio 3),
weights round-tripped through a real checkpoint directory: prefill logits of two prompts of
different lengths in one batch, 8 decode steps against the KV cache, and 32 greedy tokens of
both prompts (one batch) equal to HF `generate` run on each prompt alone.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from runtime.generate import generate, generate_greedy  # noqa: E402
from runtime.numpy_executor import NumpyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.hf_reference import build_model, save_checkpoint  # noqa: E402
from tests.parity import PROMPT_LENGTHS, check_prefill_and_decode, hf_greedy, hf_logits  # noqa: E402

FAMILIES = ["gpt2", "llama", "qwen2", "qwen3"]
NEW_TOKENS = 32
# The NumPy executor's logits are within ~1e-6 of HF's (relative to the largest |logit|), so a
# greedy pick could flip on rounding only where HF's top two logits lie closer than that; the
# seeds and prompts here have no such near tie (checked below), so the token comparison is exact.
GREEDY_MARGIN = 1e-4


@pytest.fixture(scope="module", params=FAMILIES)
def compiled(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    model = build_model(request.param, seed=FAMILIES.index(request.param))
    save_checkpoint(model, str(directory))
    options = CompileOptions(checkpoint=str(directory), max_batch=2, max_seq=48, prefill_buckets=(8, 16))
    compile_plan(request.param, str(directory / "model.plan"), options)
    return model, NumpyExecutor(load_plan(str(directory / "model.plan")))


def test_prefill_and_decode_logits_match(compiled):
    model, executor = compiled
    check_prefill_and_decode(model, executor, bound=1e-4)


def test_greedy_tokens_equal_hf_generate(compiled):
    model, executor = compiled
    rng = np.random.default_rng(11)
    prompts = [list(rng.integers(0, model.config.vocab_size, size=n)) for n in PROMPT_LENGTHS]
    ours = generate(executor, prompts, NEW_TOKENS, eos_token_ids=()).tokens
    for prompt, generated in zip(prompts, ours):
        expected, margins = hf_greedy(model, prompt, NEW_TOKENS)
        step = int(np.argmin(margins))
        assert margins[step] > GREEDY_MARGIN, f"HF's pick {step} is a near tie ({margins[step]:.1e}): pick another seed"
        assert generated == expected


def test_long_prompt_takes_several_prefill_chunks(compiled):
    model, executor = compiled
    rng = np.random.default_rng(3)
    prompt = list(rng.integers(0, model.config.vocab_size, size=37))  # 16 + 16 + 5 rows
    ours = generate_greedy(executor, [prompt], max_new_tokens=3)[0]
    sequence = list(prompt)
    for _ in range(3):
        sequence.append(int(hf_logits(model, sequence)[-1].argmax()))
    assert ours == sequence[37:]
