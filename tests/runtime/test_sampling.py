"""Sampling: seeded draws reproduce, the cuts keep only the tokens they should."""

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.sampling import Sampler, SamplingParams

LOGITS = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
HISTORY = [[1, 2], [3], []]


def _draws(params, steps=20):
    sampler = Sampler(params)
    return [sampler(LOGITS, HISTORY).tolist() for _ in range(steps)]


def test_greedy_is_argmax():
    assert Sampler(SamplingParams())(LOGITS, HISTORY).tolist() == LOGITS.argmax(axis=-1).tolist()


def test_seed_reproduces_and_differs():
    params = SamplingParams(temperature=1.0, seed=42)
    assert _draws(params) == _draws(params)
    assert _draws(params) != _draws(SamplingParams(temperature=1.0, seed=43))


def test_top_k_keeps_only_k_best():
    draws = np.array(_draws(SamplingParams(temperature=5.0, top_k=3, seed=1), steps=200))
    for row in range(3):
        allowed = set(np.argsort(-LOGITS[row])[:3].tolist())
        assert set(draws[:, row].tolist()) <= allowed
        assert len(set(draws[:, row].tolist())) > 1


def test_top_p_keeps_nucleus():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    draws = {Sampler(SamplingParams(temperature=1.0, top_p=0.7, seed=s))(logits, [[]])[0] for s in range(200)}
    assert draws == {0, 1}


def test_repetition_penalty_discourages_history():
    logits = np.array([[2.0, 1.9, -1.0]])
    assert Sampler(SamplingParams())(logits, [[0]])[0] == 0
    assert Sampler(SamplingParams(repetition_penalty=1.2))(logits, [[0]])[0] == 1


def test_invalid_parameters():
    with pytest.raises(InputError, match="invalid sampling"):
        Sampler(SamplingParams(top_p=0.0))
