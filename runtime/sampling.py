"""Sampling settings for the on-device sampler (templates/sample.py.jinja): greedy, temperature,
top-k, top-p, repetition penalty, applied in Hugging Face's order; a seed makes draws reproducible.
"""

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
        """Raise InputError for out-of-range values."""
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise InputError(f"invalid sampling parameters {self} (temperature >= 0, top_k >= 0, "
                             f"0 < top_p <= 1, repetition_penalty > 0)")
        return self


def neutral_params(batch):
    """The sampler's params rows [B, 4] for greedy picks with no penalty (what a fresh executor
    holds, so programs run outside `generate` sample harmlessly)."""
    return np.tile(np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32), (batch, 1))
