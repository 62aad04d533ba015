"""Greedy generation over any executor with `plan`, `reset()` and `run(program, ...)`.

Prompts are prefilled in chunks of the plan's prefill buckets (a prompt longer than the largest
bucket takes several chunks), then each new token is one run of the decode program.
"""

import time
from dataclasses import dataclass

import numpy as np

from runtime.errors import InputError
from runtime.sampling import Sampler, SamplingParams


def _pick_bucket(buckets, remaining):
    fitting = [bucket for bucket in buckets if bucket >= remaining]
    return min(fitting) if fitting else max(buckets)


def check_prompts(plan, prompts, max_new_tokens):
    """Raise InputError for prompts the plan cannot serve (empty, too many, too long, bad ids)."""
    limits = plan["limits"]
    vocab = plan["model"]["config"].get("vocab_size")
    if not prompts:
        raise InputError("no prompt given")
    if len(prompts) > limits["max_batch"]:
        raise InputError(f"{len(prompts)} prompts exceed the plan's max batch {limits['max_batch']} "
                         f"(recompile with --max-batch {len(prompts)})")
    for index, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise InputError(f"prompt {index} is empty")
        if len(prompt) + max_new_tokens > limits["max_seq"]:
            raise InputError(f"prompt {index} has {len(prompt)} tokens + {max_new_tokens} new tokens, more than the "
                             f"plan's max sequence {limits['max_seq']} (recompile with a larger --max-seq)")
        bad = [t for t in prompt if not 0 <= int(t) < (vocab or 2 ** 31)]
        if bad:
            raise InputError(f"prompt {index} has token id {bad[0]} outside the vocabulary (0..{vocab - 1})")


def prefill(executor, prompts):
    """Run the prompts through the prefill programs; returns each one's last-token logits [n, V]."""
    plan = executor.plan
    batch = plan["limits"]["max_batch"]
    buckets = plan["limits"]["prefill_buckets"]
    lengths = [len(p) for p in prompts]
    done = [0] * len(prompts)
    last_logits = [None] * len(prompts)
    executor.reset()
    while any(done[i] < lengths[i] for i in range(len(prompts))):
        seq = _pick_bucket(buckets, max(lengths[i] - done[i] for i in range(len(prompts))))
        tokens = np.zeros((batch, seq), dtype=np.int32)
        start_pos = np.zeros(batch, dtype=np.int32)
        seq_lens = np.zeros(batch, dtype=np.int32)
        for i, prompt in enumerate(prompts):
            take = min(seq, lengths[i] - done[i])
            tokens[i, :take] = prompt[done[i]:done[i] + take]
            start_pos[i], seq_lens[i] = done[i], take
        logits = executor.run(f"prefill_{seq}", tokens, start_pos, seq_lens)["logits"]
        for i in range(len(prompts)):
            if seq_lens[i] and done[i] + seq_lens[i] == lengths[i]:
                last_logits[i] = logits[i * seq + seq_lens[i] - 1]
            done[i] += int(seq_lens[i])
    return np.stack(last_logits)


def decode_step(executor, next_tokens, positions, active):
    """One decode program run; returns logits [n, V] for the n sequences given."""
    batch = executor.plan["limits"]["max_batch"]
    tokens = np.zeros((batch, 1), dtype=np.int32)
    start_pos = np.zeros(batch, dtype=np.int32)
    seq_lens = np.zeros(batch, dtype=np.int32)
    count = len(next_tokens)
    tokens[:count, 0] = next_tokens
    start_pos[:count] = positions
    seq_lens[:count] = active
    return executor.run("decode", tokens, start_pos, seq_lens)["logits"][:count]


@dataclass
class Generation:
    """What `generate` returns: new token ids per sequence, why each stopped, and timings."""

    tokens: list
    finish_reasons: list
    prompt_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    def stats(self):
        """One line of throughput numbers (what `cgc run --stats` prints)."""
        generated = sum(len(t) for t in self.tokens)
        prefill_rate = self.prompt_tokens / self.prefill_seconds if self.prefill_seconds else 0.0
        decode_steps = max(generated - len(self.tokens), 0)
        decode_rate = decode_steps / self.decode_seconds if self.decode_seconds else 0.0
        return (f"prompt {self.prompt_tokens} tokens in {self.prefill_seconds * 1e3:.1f} ms ({prefill_rate:.1f} tok/s); "
                f"generated {generated} tokens, decode {decode_rate:.1f} tok/s")


def generate(executor, prompts, max_new_tokens, sampling=None, eos_token_ids=(), stop_strings=(), tokenizer=None,
             on_token=None):
    """Generate up to `max_new_tokens` per prompt; stops a sequence at an EOS id or a stop string.

    `on_token(sequence index, token id)` is called as tokens are chosen (for streaming). Stop
    strings need `tokenizer`; the token that completes one is kept, text after it is not cut.
    """
    prompts = [list(map(int, p)) for p in prompts]
    check_prompts(executor.plan, prompts, max_new_tokens)
    if stop_strings and tokenizer is None:
        raise InputError("stop strings need a plan with a tokenizer")
    sampler = Sampler(sampling or SamplingParams())
    result = Generation([[] for _ in prompts], ["length"] * len(prompts), prompt_tokens=sum(map(len, prompts)))
    if max_new_tokens == 0:
        return result
    started = time.perf_counter()
    logits = prefill(executor, prompts)
    result.prefill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    positions = np.array([len(p) for p in prompts], dtype=np.int32)
    active = np.ones(len(prompts), dtype=np.int32)
    histories = [list(p) for p in prompts]
    for step in range(max_new_tokens):
        chosen = sampler(logits, histories)
        for i, token in enumerate(chosen):
            if not active[i]:
                continue
            token = int(token)
            result.tokens[i].append(token)
            histories[i].append(token)
            if on_token is not None:
                on_token(i, token)
            if token in eos_token_ids:
                active[i], result.finish_reasons[i] = 0, "eos"
            elif stop_strings and any(s in tokenizer.decode(result.tokens[i][-16:]) for s in stop_strings):
                active[i], result.finish_reasons[i] = 0, "stop"
        if step == max_new_tokens - 1 or not active.any():
            break
        logits = decode_step(executor, chosen.astype(np.int32), positions, active)
        positions += active
    result.decode_seconds = time.perf_counter() - started
    return result


def generate_greedy(executor, prompts, max_new_tokens, eos_token_id=None, on_token=None):
    """Greedy-decode up to `max_new_tokens` per prompt; returns the new token ids of each."""
    eos = () if eos_token_id is None else (eos_token_id,)
    return generate(executor, prompts, max_new_tokens, eos_token_ids=eos, on_token=on_token).tokens
