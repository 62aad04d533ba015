"""The on-device sampler's NumPy reference (runtime/kernels/sample.py): what it picks and writes."""

import numpy as np
import pytest

from runtime.kernels.matmul import group_argmax
from runtime.kernels.sample import hash_uniform, sample
from runtime.plan_layout import ARGMAX_GROUP


class Buffer:
    """A stand-in for a kernel operand View over a plain array."""

    def __init__(self, values, dtype="float32"):
        self.array = np.array(values)
        self.dtype = dtype

    def read(self):
        return self.array.astype(np.int64 if self.dtype == "int32" else np.float32)


def _run(logits, settings=(0.0, 1.0, 1.0), top_k=0, seed=7, prompt_len=None, cancel=0, eos=(), history=None,
         phase="decode", start=4, length=1, decode_lens=1, argmax=None):
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float32))
    seq = logits.shape[0]
    history = np.zeros((1, 32), dtype=np.int32) if history is None else np.array([history + [0] * (32 - len(history))])
    state = {
        "tokens": Buffer([[-5]], "int32"), "start": Buffer([-5], "int32"), "lens": Buffer([decode_lens], "int32"),
        "history": Buffer(history, "int32"),
    }
    prompt_len = start + length if prompt_len is None else prompt_len
    sample({"seq": seq, "phase": phase}, Buffer(logits), Buffer([start], "int32"), Buffer([length], "int32"),
           Buffer([[*settings, 0.0]]), Buffer([[top_k, seed, prompt_len, cancel]], "int32"),
           Buffer(list(eos) + [-1] * (8 - len(eos)), "int32"), state["history"], state["tokens"], state["start"],
           state["lens"], Buffer(np.zeros_like(logits)),
           *([] if argmax is None else [Buffer(argmax[0]), Buffer(argmax[1], "int32")]))
    return int(state["tokens"].array[0, 0]), int(state["start"].array[0]), int(state["lens"].array[0]), \
        state["history"].array[0]


RNG = np.random.default_rng(3)
LOGITS = RNG.standard_normal(1000).astype(np.float32)


def test_greedy_is_argmax_and_feeds_the_next_step():
    token, start, lens, history = _run(LOGITS, start=4)
    assert token == int(np.argmax(LOGITS)) and start == 5 and lens == 1 and history[5] == token


def test_repetition_penalty_moves_a_greedy_pick():
    logits = np.array([3.0, 2.9, -1.0], dtype=np.float32)
    assert _run(logits, history=[0, 2, 2, 2], start=3)[0] == 0
    assert _run(logits, settings=(0.0, 1.0, 1.2), history=[0, 2, 2, 2], start=3)[0] == 1


def test_top_k_one_and_tiny_top_p_are_greedy():
    for settings, top_k in (((1.0, 1.0, 1.0), 1), ((1.0, 1e-6, 1.0), 0)):
        picks = {_run(LOGITS, settings, top_k=top_k, seed=seed)[0] for seed in range(20)}
        assert picks == {int(np.argmax(LOGITS))}


def test_top_k_keeps_only_the_k_largest():
    allowed = set(np.argsort(-LOGITS)[:5].tolist())
    picks = {_run(LOGITS, (2.0, 1.0, 1.0), top_k=5, seed=seed)[0] for seed in range(60)}
    assert picks <= allowed and len(picks) > 1


def test_seeded_draws_repeat_and_follow_the_softmax():
    settings = (1.0, 1.0, 1.0)
    assert _run(LOGITS, settings, seed=11)[0] == _run(LOGITS, settings, seed=11)[0]
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    counts = np.bincount([_run(logits, settings, seed=seed)[0] for seed in range(4000)], minlength=4)
    expected = 4000 * np.array([0.5, 0.3, 0.15, 0.05])
    assert ((counts - expected) ** 2 / expected).sum() < 16.3  # chi-square, 3 dof, p ~ 0.001


def test_hash_is_uniform_and_depends_on_every_input():
    ids = np.arange(100000, dtype=np.uint32)
    draws = hash_uniform(1, 2, ids)
    assert 0 < draws.min() and draws.max() < 1 and abs(draws.mean() - 0.5) < 0.01
    assert not np.array_equal(draws, hash_uniform(2, 2, ids)) and not np.array_equal(draws, hash_uniform(1, 3, ids))


def test_hash_uniform_stays_below_one():
    # seed 2, position 0: ids 2270064 and 11449329 hash to the top 24-bit value, which rounded to
    # exactly 1.0 (an infinite Gumbel score) before the uniform kept only 23 bits
    draws = hash_uniform(2, 0, np.array([2270064, 11449329], dtype=np.int32))
    assert draws.max() < 1.0 and np.isfinite(-np.log(-np.log(draws))).all()


@pytest.mark.parametrize("case, expected_lens", [
    ({"eos": (int(np.argmax(LOGITS)),)}, 0),        # EOS chosen: the sequence finishes
    ({"cancel": 1}, 0),                             # the host cancelled it (a stop string)
    ({"start": 31}, 0),                             # no room left in the plan's sequence
])
def test_finishing_rules(case, expected_lens):
    assert _run(LOGITS, **case)[2] == expected_lens


def test_prefill_samples_only_when_the_chunk_completes_the_prompt():
    rows = np.stack([RNG.standard_normal(1000), LOGITS]).astype(np.float32)  # seq 2, last real row 1
    token, start, lens, _ = _run(rows, phase="prefill", start=0, length=2, prompt_len=2, decode_lens=0)
    assert (token, start, lens) == (int(np.argmax(LOGITS)), 2, 1)
    untouched = _run(rows, phase="prefill", start=0, length=2, prompt_len=9, decode_lens=0)
    assert untouched[:3] == (-5, -5, 0)


def test_inactive_sequence_writes_nothing():
    assert _run(LOGITS, length=0)[:3] == (-5, -5, 1)


def test_group_argmax_keeps_each_groups_first_largest_value():
    rows = RNG.standard_normal((3, 2 * ARGMAX_GROUP + 5)).astype(np.float32)
    rows[0, 3] = rows[0, 9] = 50.0                            # a tie inside a group: the first id
    rows[1, 2 * ARGMAX_GROUP + 4] = 60.0                      # the short last group
    rows[2, :] = -7.0                                         # all equal: each group's first column
    values, ids = group_argmax(rows)
    assert values.shape == ids.shape == (3, 3)
    assert ids[0, 0] == 3 and values[0, 0] == 50.0
    assert ids[1, 2] == 2 * ARGMAX_GROUP + 4 and values[1, 2] == 60.0
    assert ids[2].tolist() == [0, ARGMAX_GROUP, 2 * ARGMAX_GROUP] and (values[2] == -7.0).all()
    for row, row_values, row_ids in zip(rows, values, ids):
        assert (row[row_ids] == row_values).all()


def test_greedy_from_group_maxima_is_the_first_argmax_of_the_row():
    logits = np.round(RNG.standard_normal(1000) * 3).astype(np.float32)  # many ties across groups
    pairs = group_argmax(logits[None])
    token = _run(logits, argmax=pairs)[0]
    assert token == int(np.argmax(logits))
    # the pairs are what a greedy pick reads: a different (consistent) set moves it
    moved = logits.copy()
    moved[777] = 100.0
    assert _run(logits, argmax=group_argmax(moved[None]))[0] == 777


def test_sampling_and_penalty_read_the_logits_not_the_group_maxima():
    logits = np.array([3.0, 2.9, -1.0], dtype=np.float32)
    stale = (np.array([[9.0]], dtype=np.float32), np.array([[2]]))  # would pick id 2
    assert _run(logits, settings=(0.0, 1.0, 1.2), history=[0, 2, 2, 2], start=3, argmax=stale)[0] == 1
    assert _run(logits, settings=(1.0, 1.0, 1.0), top_k=1, argmax=stale)[0] == 0
    assert _run(logits, argmax=stale)[0] == 2
