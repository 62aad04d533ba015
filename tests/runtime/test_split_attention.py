"""Split decode attention (plans with long caches and few heads): each head's cache tiles spread
over CTAs, whose partial results an `attention_merge` launch combines (templates/README.md)."""

import numpy as np
import pytest

from compiler import lower
from compiler.passes import infer_shapes, plan_buffers
from runtime.kernels.attention_merge import merge_splits
from tests.conftest import small_graph
from tests.graph_exec import run_graph

LONG = 1024  # positions: 8 tiles of 128 keys for the small graphs' heads, split 8 ways (compiler/tiles.py)


def test_merge_splits_equals_softmax_over_any_partition():
    """The contract the kernels keep: any spread of a row's keys over the splits (one split with
    none) merges to softmax attention over all of them."""
    rng = np.random.default_rng(3)
    splits, heads, head_dim, keys = 4, 3, 16, 37
    scores = 4.0 * rng.standard_normal((heads, keys))
    values = rng.standard_normal((heads, keys, head_dim))
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected = np.einsum("hk,hkd->hd", probs / probs.sum(axis=1, keepdims=True), values).reshape(1, -1)
    owner = rng.integers(0, splits - 1, size=keys)  # the last split sees no key
    outputs, lse = np.zeros((splits, heads * head_dim)), np.full((splits, heads), -1.0e30)
    for split in range(splits - 1):
        mine = owner == split
        top = scores[:, mine].max(axis=1, keepdims=True)
        weights = np.exp(scores[:, mine] - top)
        total = weights.sum(axis=1, keepdims=True)
        outputs[split] = (np.einsum("hk,hkd->hd", weights, values[:, mine]) / total).reshape(-1)
        lse[split] = (top + np.log(total))[:, 0]
    merged = merge_splits(outputs.astype(np.float32), lse.astype(np.float32), splits, head_dim)
    assert np.abs(merged - expected).max() < 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("max_batch, max_seq, splits", [(1, LONG, 8), (2, LONG, 8), (1, 256, 1), (64, LONG, 1)])
def test_decode_attention_splits_in_long_plans_of_few_heads(family, max_batch, max_seq, splits):
    """Split 8 ways where the cache holds 8 tiles, but not in shorter plans nor past 256 CTAs (64
    sequences of the small graphs' 3 or 6 heads)."""
    graph = plan_buffers.run(infer_shapes.run(small_graph(family)))
    lowering = lower.Lowering(graph, max_batch, max_seq, prompt_logits=True)  # scratch: split partials only
    for shape in lower.program_shapes(max_batch, (8,)):
        launches = lowering.lower_program(shape)["launches"]
        specs = [lowering.kernels[launch["kernel"]] for launch in launches]
        expected = splits if shape.seq == 1 else 1
        attentions = [index for index, spec in enumerate(specs) if spec["template"] == "attention"]
        assert attentions
        for index in attentions:  # each split attention is followed by its merge
            assert specs[index]["constants"].get("kv_splits", 1) == expected
            assert (specs[index + 1]["template"] == "attention_merge") == (expected > 1)
        merges = [spec for spec in specs if spec["template"] == "attention_merge"]
        assert len(merges) == (len(attentions) if expected > 1 else 0)
    assert (lowering.scratch_bytes > 0) == (splits > 1)


def test_split_decode_logits_equal_one_cta_per_head(family):
    tokens = [5, 17, 3, 250, 42, 7, 11, 99, 1]
    short, _ = run_graph(small_graph(family), tokens, decode=True)
    long, plan = run_graph(small_graph(family), tokens, decode=True, max_seq=LONG)
    assert any(kernel["template"] == "attention_merge" for kernel in plan["kernels"])
    assert np.abs(long - short).max() < 1e-5 * np.abs(short).max()
