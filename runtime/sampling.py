"""Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty.

Follows Hugging Face's order (repetition penalty, temperature, top-k, top-p); a seed makes the
draws reproducible.
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


class Sampler:
    """Picks one token per row of logits, given each sequence's tokens so far."""

    def __init__(self, params):
        self.params = params.check()
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits, histories):
        """Token ids [n] for logits [n, V] and `histories` (n lists of ids seen so far)."""
        logits = np.array(logits, dtype=np.float64)
        params = self.params
        if params.repetition_penalty != 1.0:
            for row, history in zip(logits, histories):
                seen = np.unique(np.asarray(history, dtype=np.int64))
                values = row[seen]
                row[seen] = np.where(values > 0, values / params.repetition_penalty, values * params.repetition_penalty)
        if params.temperature == 0:
            return logits.argmax(axis=-1)
        logits = logits / params.temperature
        if params.top_k:
            kth = np.sort(logits, axis=-1)[:, -min(params.top_k, logits.shape[1])][:, None]
            logits = np.where(logits < kth, -np.inf, logits)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        if params.top_p < 1.0:
            order = np.argsort(-probs, axis=-1)
            sorted_probs = np.take_along_axis(probs, order, axis=-1)
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            drop_sorted = (np.cumsum(sorted_probs, axis=-1) - sorted_probs) >= params.top_p
            drop = np.zeros_like(drop_sorted)
            np.put_along_axis(drop, order, drop_sorted, axis=-1)
            probs = np.where(drop, 0.0, probs)
            probs /= probs.sum(axis=-1, keepdims=True)
        draws = self.rng.random(len(probs))[:, None]
        return np.minimum((np.cumsum(probs, axis=-1) < draws).sum(axis=-1), probs.shape[1] - 1)
