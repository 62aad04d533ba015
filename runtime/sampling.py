"""Sampling settings for the on-device sampler (templates/sample.py.jinja): greedy, temperature,
top-k, top-p, repetition penalty, applied in Hugging Face's order; a seed makes draws reproducible.
"""

import math
from dataclasses import dataclass

import numpy as np

from runtime.errors import InputError


@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy; top_k 0 and top_p 1 mean no cut."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def check(self):
        """Raise InputError naming the first out-of-range value (NaN included)."""
        _number("temperature", self.temperature, lambda v: v >= 0, ">= 0")
        _integer("top_k", self.top_k, 0, INT32_MAX)
        _number("top_p", self.top_p, lambda v: 0 < v <= 1, "in (0, 1]")
        _number("repetition_penalty", self.repetition_penalty, lambda v: v > 0, "> 0")
        if self.seed is not None:
            _integer("seed", self.seed, 0, INT32_MAX)
        return self


INT32_MAX = 2 ** 31 - 1


def _number(name, value, ok, expected):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"sampling {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or not ok(value):
        raise InputError(f"sampling {name} must be finite and {expected}, got {value}")


def _integer(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"sampling {name} must be an integer, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise InputError(f"sampling {name} must be in {low}..{high}, got {value}")


def neutral_params(batch):
    """The sampler's params rows [B, 4] for greedy picks with no penalty (what a fresh executor
    holds, so programs run outside `generate` sample harmlessly)."""
    return np.tile(np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32), (batch, 1))
