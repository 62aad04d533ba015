"""Generation over any executor (NumPy or CuPy) with `plan`, `reset`, `set_inputs`, `launch`,
`write`, `fetch` (and `run` for host-side logits).

Prompts are prefilled in chunks of the plan's prefill buckets (a prompt longer than the largest
bucket takes several chunks); each program's final `sample` launch picks the next tokens on the
device, so every further token is one replay of the decode program with no host round trip.
"""

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from runtime.errors import InputError, PlanError
from runtime.sampling import SamplingParams
from runtime.tokenizer import check_ids


def _pick_bucket(buckets, remaining):
    fitting = [bucket for bucket in buckets if bucket >= remaining]
    return min(fitting) if fitting else max(buckets)


def check_prompts(plan, prompts, max_new_tokens):
    """Raise InputError for prompts the plan cannot serve (empty, too many, too long, bad ids)."""
    limits = plan["limits"]
    vocab = plan["model"]["config"].get("vocab_size") or 2 ** 31
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
        bad = [t for t in prompt if not 0 <= int(t) < vocab]
        if bad:
            raise InputError(f"prompt {index} has token id {bad[0]} outside the vocabulary (0..{vocab - 1})")


def check_request(prompts, max_new_tokens, eos_token_ids=(), stop_strings=()):
    """The prompts as lists of ints; InputError for the wrong types or values (float or bool ids,
    ids beyond int32, a str instead of a list of prompts, max_new_tokens not a non-negative int)."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__iter__"):
        raise InputError(f"prompts must be a list of token-id lists, got {type(prompts).__name__}")
    prompts = list(prompts)
    if any(isinstance(p, (str, bytes, int, np.integer)) or not hasattr(p, "__iter__") for p in prompts):
        raise InputError("prompts must be a list of token-id lists (one list per sequence), e.g. [[464, 3290]]")
    checked = [check_ids(p) for p in prompts]
    check_ids(eos_token_ids)
    if isinstance(stop_strings, str) or any(not isinstance(s, str) or not s for s in stop_strings):
        raise InputError("stop strings must be a list of non-empty strings")
    return checked


def _chunks(plan, prompts):
    """(bucket, tokens, start_pos, seq_lens) of each prefill program run the prompts need."""
    batch, buckets = plan["limits"]["max_batch"], plan["limits"]["prefill_buckets"]
    lengths = [len(p) for p in prompts]
    done = [0] * len(prompts)
    while any(done[i] < lengths[i] for i in range(len(prompts))):
        seq = _pick_bucket(buckets, max(lengths[i] - done[i] for i in range(len(prompts))))
        tokens = np.zeros((batch, seq), dtype=np.int32)
        start_pos = np.zeros(batch, dtype=np.int32)
        seq_lens = np.zeros(batch, dtype=np.int32)
        for i, prompt in enumerate(prompts):
            take = min(seq, lengths[i] - done[i])
            tokens[i, :take] = prompt[done[i]:done[i] + take]
            start_pos[i], seq_lens[i] = done[i], take
            done[i] += take
        yield seq, tokens, start_pos, seq_lens


def prefill(executor, prompts):
    """Run the prompts through the prefill programs; returns each one's last-token logits [n, V]."""
    last_logits = [None] * len(prompts)
    executor.reset()
    for seq, tokens, start_pos, seq_lens in _chunks(executor.plan, prompts):
        logits = executor.run(f"prefill_{seq}", tokens, start_pos, seq_lens)["logits"]
        for i, prompt in enumerate(prompts):
            if seq_lens[i] and start_pos[i] + seq_lens[i] == len(prompt):
                last_logits[i] = logits[i * seq + seq_lens[i] - 1]
    return np.stack(last_logits)


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

    Tokens are chosen on the device by the plan's `sample` launches, which feed each choice
    straight into the next decode step, so the host only queues decode replays and reads the
    chosen ids back asynchronously, LOOKAHEAD steps behind. `on_token(sequence index, token id)`
    is called as ids arrive (streaming). Stop strings need `tokenizer`; the token completing one
    is kept. A seed makes sampling reproducible on the same plan and device.
    """
    prompts = check_request(prompts, max_new_tokens, eos_token_ids, stop_strings)
    check_prompts(executor.plan, prompts, max_new_tokens)
    if stop_strings and tokenizer is None:
        raise InputError("stop strings need a plan with a tokenizer")
    state = executor.plan.get("generation")
    if state is None:
        raise PlanError(f"{executor.plan.get('path', 'plan')}: has no logits output to sample from")
    result = Generation([[] for _ in prompts], ["length"] * len(prompts), prompt_tokens=sum(map(len, prompts)))
    if max_new_tokens == 0:
        return result
    eos = set(int(t) for t in eos_token_ids)
    started = time.perf_counter()
    _load_state(executor, state, prompts, sampling or SamplingParams(), sorted(eos))
    _prefill_chunks(executor, prompts)
    decode_inputs = executor.plan["programs"]["decode"]["inputs"]
    watched = [decode_inputs["tokens"], decode_inputs["seq_lens"]]
    stream = _Stream(result, max_new_tokens, eos, stop_strings, tokenizer, on_token, executor, state)
    stream.take(*executor.fetch(watched).wait())
    result.prefill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    pending = deque()
    launched = 1  # the prefill's sampler chose the first token
    while stream.running() and launched < max_new_tokens:
        executor.launch("decode")
        pending.append(executor.fetch(watched))
        launched += 1
        if len(pending) > LOOKAHEAD:
            stream.take(*pending.popleft().wait())
    while pending:
        stream.take(*pending.popleft().wait())
    result.decode_seconds = time.perf_counter() - started
    return result


LOOKAHEAD = 2  # decode steps queued ahead of the one whose ids the host reads


def _load_state(executor, state, prompts, sampling, eos):
    """Write the prompts' history, the sampling settings and the EOS ids; no sequence active yet."""
    plan = executor.plan
    batch, max_seq = plan["limits"]["max_batch"], plan["limits"]["max_seq"]
    sampling.check()
    if len(eos) > state["eos"]["shape"][0]:
        raise InputError(f"{len(eos)} EOS ids given; the plan's sampler checks at most {state['eos']['shape'][0]}")
    seed = sampling.seed if sampling.seed is not None else int(np.random.SeedSequence().entropy % (1 << 31))
    history = np.zeros((batch, max_seq), dtype=np.int32)
    params = np.tile(np.array([sampling.temperature, sampling.top_p, sampling.repetition_penalty, 0.0],
                              dtype=np.float32), (batch, 1))
    options = np.zeros((batch, 4), dtype=np.int32)
    options[:, 2] = -1  # unused rows never complete a prompt, so they are never sampled
    for index, prompt in enumerate(prompts):
        history[index, :len(prompt)] = prompt
        options[index] = (sampling.top_k, seed, len(prompt), 0)
    executor.reset()
    executor.write(state["history"], history)
    executor.write(state["params"], params)
    executor.write(state["options"], options)
    executor.write(state["eos"], np.array(eos + [-1] * (state["eos"]["shape"][0] - len(eos)), dtype=np.int32))
    executor.write(plan["programs"]["decode"]["inputs"]["seq_lens"], np.zeros(batch, dtype=np.int32))


def _prefill_chunks(executor, prompts):
    """Queue the prefill programs over the prompts, in chunks of the plan's buckets."""
    for seq, tokens, start_pos, seq_lens in _chunks(executor.plan, prompts):
        executor.set_inputs(f"prefill_{seq}", tokens, start_pos, seq_lens)
        executor.launch(f"prefill_{seq}")


class _Stream:
    """Host-side bookkeeping of the ids the device chose: per-sequence tokens, stops, streaming."""

    def __init__(self, result, max_new_tokens, eos, stop_strings, tokenizer, on_token, executor, state):
        self.result, self.max_new_tokens, self.eos = result, max_new_tokens, eos
        self.stop_strings, self.tokenizer, self.on_token = stop_strings, tokenizer, on_token
        self.executor, self.state = executor, state
        self.active = [True] * len(result.tokens)

    def running(self):
        """True while some sequence may still produce tokens."""
        return any(self.active)

    def take(self, tokens, seq_lens):
        """Record one step's chosen ids (tokens [B, 1], seq_lens [B] as the sampler left them)."""
        cancelled = []
        for i, tokens_so_far in enumerate(self.result.tokens):
            if not self.active[i]:
                continue
            token = int(tokens[i, 0])
            tokens_so_far.append(token)
            if self.on_token is not None:
                self.on_token(i, token)
            if token in self.eos:
                self.active[i], self.result.finish_reasons[i] = False, "eos"
            elif self.stop_strings and any(s in self.tokenizer.decode(tokens_so_far[-16:]) for s in self.stop_strings):
                self.active[i], self.result.finish_reasons[i] = False, "stop"
                cancelled.append(i)
            elif len(tokens_so_far) >= self.max_new_tokens or seq_lens[i] == 0:
                self.active[i] = False  # length: max_new_tokens, or the plan's max sequence
        if cancelled:  # the device keeps sampling queued steps; tell it to stop these sequences
            options = self.executor.fetch([self.state["options"]]).wait()[0].copy()
            options[cancelled, 3] = 1
            self.executor.write(self.state["options"], options)


def generate_greedy(executor, prompts, max_new_tokens, eos_token_id=None, on_token=None):
    """Greedy-decode up to `max_new_tokens` per prompt; returns the new token ids of each."""
    eos = () if eos_token_id is None else (eos_token_id,)
    return generate(executor, prompts, max_new_tokens, eos_token_ids=eos, on_token=on_token).tokens
