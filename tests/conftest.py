"""Shared fixtures: small graphs loaded from the shipped YAMLs."""

import pytest

from compiler.graph_loader import load_graph

SMALL = {
    "gpt2": ("nano", {"n_layer": 2, "vocab_size": 300}),
    "llama": ("tiny", {}),
    "qwen2": ("tiny", {}),
    "qwen3": ("tiny", {}),
}


@pytest.fixture(params=sorted(SMALL))
def family(request):
    """Each shipped graph family in turn."""
    return request.param


def small_graph(family, dtype="float32"):
    """The family's graph at a small preset, shapes not yet inferred."""
    preset, overrides = SMALL[family]
    return load_graph(family, preset=preset, overrides=overrides, dtype=dtype)
