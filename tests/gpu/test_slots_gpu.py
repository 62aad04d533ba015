"""Slots on the GPU: a greedy sequence gives the same ids alone or admitted between decode steps
beside others, in any slot, and a seeded sampled one repeats, on each family's small random HF
model compiled for this GPU (the batch-2 parity plans' kernels, already in the test cache)."""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")
torch = pytest.importorskip("torch")

from compiler.compile import compile_plan  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.generate import generate  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from runtime.sampling import SamplingParams  # noqa: E402
from tests.gpu.gpu_cases import parity_options  # noqa: E402
from tests.hf_reference import build_model, save_checkpoint  # noqa: E402
from tests.runtime.test_slots import _staggered  # noqa: E402

NEW_TOKENS = 16
SAMPLED = SamplingParams(temperature=1.0, top_k=50, top_p=0.9, repetition_penalty=1.1, seed=1234)


@pytest.fixture(scope="module", params=["gpt2", "llama", "qwen3"])
def plan(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    model = build_model(request.param, seed=5)
    save_checkpoint(model, str(directory))
    options = parity_options(str(directory), int(cupy.cuda.Device().compute_capability), max_batch=2)
    compile_plan(request.param, str(directory / "model.plan"), options)
    return load_plan(str(directory / "model.plan")), model.config.vocab_size


@pytest.mark.parametrize("sampling", [SamplingParams(), SAMPLED], ids=["greedy", "seeded"])
def test_sequences_give_the_same_ids_alone_or_beside_others(plan, sampling):
    body, vocab = plan
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, vocab, size=length).tolist() for length in (5, 20, 9, 13, 3)]
    with CupyExecutor(body) as executor:
        alone = [generate(executor, [p], NEW_TOKENS, sampling=sampling).tokens[0] for p in prompts]
        beside = _staggered(executor, prompts, [sampling] * len(prompts), new_tokens=NEW_TOKENS)
    assert {s.slot for s in beside} == {0, 1}
    assert [s.tokens for s in beside] == alone
