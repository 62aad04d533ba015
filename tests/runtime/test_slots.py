"""runtime.generate.Slots: sequences admitted between decode steps into any free slot give the
same ids as alone (greedy, and sampled with a seed), the running ones go on untouched, and a
finished sequence frees its slot for the next."""

import numpy as np
import pytest

from compiler.compile import CompileOptions, compile_plan
from runtime.errors import InputError
from runtime.generate import Sequence, Slots, generate
from runtime.numpy_executor import NumpyExecutor
from runtime.plan import load_plan
from runtime.sampling import SamplingParams

NEW_TOKENS = 8
SAMPLED = SamplingParams(temperature=1.0, top_k=20, top_p=0.9, repetition_penalty=1.1, seed=7)


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("slots") / "llama.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", max_batch=4, max_seq=32, prefill_buckets=(4, 8)))
    return NumpyExecutor(load_plan(path))


def _prompts(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1000, size=int(rng.integers(2, 14))).tolist() for _ in range(count)]


def _alone(executor, prompt, sampling=SamplingParams()):
    return generate(executor, [prompt], NEW_TOKENS, sampling=sampling).tokens[0]


def _staggered(executor, prompts, samplings, new_tokens=NEW_TOKENS):
    """Admit one sequence every other decode step into whatever slot is free; returns the ids."""
    slots = Slots(executor)
    waiting = [Sequence(p, new_tokens, s) for p, s in zip(prompts, samplings)]
    sequences, step = list(waiting), 0
    while waiting or slots.running():
        if waiting and slots.free() and step % 2 == 0:
            slots.admit([waiting.pop(0)])
        if not slots.step():
            slots.poll(wait=True)
        slots.poll()
        step += 1
    slots.poll(wait=True)
    return sequences


def test_greedy_sequences_give_the_same_ids_beside_others(executor):
    prompts = _prompts(7)
    sequences = _staggered(executor, prompts, [SamplingParams()] * len(prompts))
    assert len({s.slot for s in sequences}) == 4  # every slot was used, some twice
    for prompt, sequence in zip(prompts, sequences):
        assert sequence.tokens == _alone(executor, prompt)
        assert sequence.finish_reason == "length"


def test_seeded_sampled_sequences_repeat_beside_others(executor):
    prompts = _prompts(6, seed=1)
    samplings = [SAMPLED, SamplingParams(), SAMPLED, SamplingParams(temperature=0.8, seed=3)] * 2
    sequences = _staggered(executor, prompts, samplings)
    for prompt, sampling, sequence in zip(prompts, samplings, sequences):
        assert sequence.tokens == _alone(executor, prompt, sampling)
    assert sequences[0].tokens != sequences[0 + 4].tokens or prompts[0] == prompts[4]


def test_a_finished_sequence_frees_its_slot_and_the_others_go_on(executor):
    prompts = _prompts(5, seed=2)
    slots_all_busy = Slots(executor)
    cancelled = Sequence(prompts[0], NEW_TOKENS)
    slots_all_busy.admit([cancelled, *(Sequence(p, NEW_TOKENS) for p in prompts[1:4])])
    assert slots_all_busy.free() == []
    slots_all_busy.poll(wait=True)
    slots_all_busy.finish(cancelled, "cancelled")
    assert slots_all_busy.free() == [cancelled.slot]
    late = Sequence(prompts[4], NEW_TOKENS)
    slots_all_busy.admit([late])
    assert late.slot == cancelled.slot
    others = [s for s in slots_all_busy.owners if s is not late]
    while slots_all_busy.running():
        if not slots_all_busy.step():
            slots_all_busy.poll(wait=True)
        slots_all_busy.poll()
    assert cancelled.finish_reason == "cancelled" and len(cancelled.tokens) == 1
    assert late.tokens == _alone(executor, prompts[4])
    for sequence in others:
        assert sequence.tokens == _alone(executor, sequence.prompt)


def test_admit_checks_each_sequence(executor):
    slots = Slots(executor)
    with pytest.raises(InputError, match="has 30 tokens \\+ 8 new tokens, more than the plan's max sequence 32"):
        slots.admit([Sequence([1] * 30, NEW_TOKENS)])
    with pytest.raises(InputError, match="top_p must be finite and in"):
        slots.admit([Sequence([1, 2], NEW_TOKENS, SamplingParams(top_p=0.0))])
    with pytest.raises(InputError, match="5 sequences given, 4 free slots"):
        slots.admit([Sequence([1, 2], NEW_TOKENS)] * 5)
    assert slots.free() == [0, 1, 2, 3]
