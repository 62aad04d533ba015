"""Large weights are made without full-size temporaries: random tensors above one block draw
each block from its own stream (the same values on any number of cores), recipes scale in place
and transposes stay views until they are encoded."""

import numpy as np

from compiler import weights
from compiler.ir import Weight
from compiler.weights import RandomWeights, build_weight, encode


def test_blocked_random_tensors_do_not_depend_on_the_core_count(monkeypatch):
    monkeypatch.setattr(weights, "RANDOM_BLOCK", 1000)
    many = RandomWeights(4).get("lm_head.weight", (70, 60))
    monkeypatch.setattr(weights.os, "cpu_count", lambda: 1)
    one = RandomWeights(4).get("lm_head.weight", (70, 60))
    np.testing.assert_array_equal(many, one)
    assert abs(many.std() - 0.02) < 0.002 and abs(many.mean()) < 0.002
    blocks = many.reshape(-1)[:4000].reshape(4, 1000)
    assert not np.allclose(blocks[0], blocks[1])  # each block its own stream
    norm = RandomWeights(4).get("norm.weight", (70, 60), init="norm")
    assert abs(norm.mean() - 1) < 0.01 and abs(norm.std() - 0.05) < 0.005


def test_transposed_and_folded_weights_encode_as_the_one_pass_reference():
    source = RandomWeights(9)
    table = {"w": Weight("w", ("checkpoint", "w"), shape=(40, 24)),
             "g": Weight("g", ("checkpoint", "g"), shape=(24,), init="norm"),
             "wt": Weight("wt", ("transpose", "w")),
             "folded": Weight("folded", ("fold_scale", "wt", "g", True))}
    w, g = source.get("w", (40, 24)), source.get("g", (24,), "norm")
    transposed = build_weight(table, "wt", source)
    assert not transposed.flags.c_contiguous  # a view until encoded
    np.testing.assert_array_equal(encode(transposed, "bfloat16"), encode(np.ascontiguousarray(w.T), "bfloat16"))
    expected = g[:, None] * w.T
    expected = expected - expected.mean(axis=0, keepdims=True)
    np.testing.assert_allclose(build_weight(table, "folded", source), expected, rtol=1e-5, atol=1e-7)
