"""Generation over any executor (NumPy or CuPy) with `plan`, `reset`, `set_inputs`, `launch`,
`write`, `fetch` (and `run` for host-side logits).

The plan's batch rows are slots (`Slots`): a sequence is admitted into a free slot (its prompt
prefilled in chunks of the plan's prefill buckets, the other rows' lengths 0 so their KV cache and
sampler state stay untouched), every decode step advances all admitted sequences at once, and a
finished sequence frees its slot at once for the next. Each program's final `sample` launch picks
the next tokens on the device, so a decode step is one replay with no host round trip; the host
reads the chosen ids back asynchronously, LOOKAHEAD steps behind. `generate` (a fixed batch) and
the server (sequences arriving at any time) both run on `Slots`.
"""

import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from runtime.dtypes import itemsize
from runtime.errors import InputError, PlanError
from runtime.sampling import SamplingParams
from runtime.tokenizer import check_ids

LOOKAHEAD = 2  # decode steps queued ahead of the one whose ids the host reads


def _pick_bucket(buckets, remaining):
    fitting = [bucket for bucket in buckets if bucket >= remaining]
    return min(fitting) if fitting else max(buckets)


def check_prompts(plan, prompts, max_new_tokens):
    """Raise InputError for prompts the plan cannot serve (empty, too many, too long, bad ids)."""
    if not prompts:
        raise InputError("no prompt given")
    max_batch = plan["limits"]["max_batch"]
    if len(prompts) > max_batch:
        raise InputError(f"{len(prompts)} prompts exceed the plan's max batch {max_batch} "
                         f"(recompile with --max-batch {len(prompts)})")
    for index, prompt in enumerate(prompts):
        check_prompt(plan, prompt, max_new_tokens, f"prompt {index}")


def check_prompt(plan, prompt, max_new_tokens, name="the prompt"):
    """Raise InputError if one prompt (named `name` in the message) cannot be served."""
    max_seq = plan["limits"]["max_seq"]
    vocab = plan["model"]["config"].get("vocab_size")
    if len(prompt) == 0:
        raise InputError(f"{name} is empty")
    if max_new_tokens < 0:
        raise InputError(f"max new tokens must be >= 0, got {max_new_tokens}")
    if len(prompt) + max_new_tokens > max_seq:
        raise InputError(f"{name} has {len(prompt)} tokens + {max_new_tokens} new tokens, more than the "
                         f"plan's max sequence {max_seq} (recompile with a larger --max-seq)")
    bad = [t for t in prompt if not 0 <= int(t) < (vocab or 2 ** 31)]
    if bad:
        raise InputError(f"{name} has token id {bad[0]} outside the vocabulary (0..{vocab - 1})")


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


def _chunks(plan, rows):
    """(bucket, tokens, start_pos, seq_lens) of each prefill program run that prompts {row: ids}
    need. A row is prefilled in the chunks it would take alone (the smallest bucket holding what
    is left, else the largest), so its arithmetic never depends on the other rows'; rows wanting
    the same bucket share a run, the others' lengths are 0 in it."""
    batch, buckets = plan["limits"]["max_batch"], plan["limits"]["prefill_buckets"]
    done = {row: 0 for row in rows}
    while any(done[row] < len(prompt) for row, prompt in rows.items()):
        wanted = {row: _pick_bucket(buckets, len(prompt) - done[row]) for row, prompt in rows.items()
                  if done[row] < len(prompt)}
        seq = max(wanted.values())
        tokens = np.zeros((batch, seq), dtype=np.int32)
        start_pos = np.zeros(batch, dtype=np.int32)
        seq_lens = np.zeros(batch, dtype=np.int32)
        for row, bucket in wanted.items():
            if bucket != seq:
                continue
            take = min(seq, len(rows[row]) - done[row])
            tokens[row, :take] = rows[row][done[row]:done[row] + take]
            start_pos[row], seq_lens[row] = done[row], take
            done[row] += take
        yield seq, tokens, start_pos, seq_lens


def prefill(executor, prompts):
    """Run the prompts through the prefill programs; returns each one's last-token logits [n, V]."""
    last_logits = [None] * len(prompts)
    executor.reset()
    for seq, tokens, start_pos, seq_lens in _chunks(executor.plan, dict(enumerate(prompts))):
        logits = executor.run(f"prefill_{seq}", tokens, start_pos, seq_lens)["logits"]
        every_row = len(logits) > len(seq_lens)  # a --prompt-logits plan; else row b is b's last token
        for i, prompt in enumerate(prompts):
            if seq_lens[i] and start_pos[i] + seq_lens[i] == len(prompt):
                last_logits[i] = logits[i * seq + seq_lens[i] - 1 if every_row else i]
    return np.stack(last_logits)


@dataclass(eq=False)
class Sequence:
    """One request on a slot: its prompt, limits and sampling, and the ids generated so far.
    finish_reason: None while running, then "eos", "length", "stop" or the caller's reason."""

    prompt: list
    max_new_tokens: int
    sampling: SamplingParams = SamplingParams()
    tokens: list = field(default_factory=list)
    finish_reason: str | None = None
    slot: int | None = None
    queued: int = 0  # launches queued that choose a token for it (its prefill, then decode steps)

    @property
    def done(self):
        """True once the sequence has ended (its slot is then free)."""
        return self.finish_reason is not None


def _row(operand, row):
    """Row `row` (first axis) of a plan operand, as an operand of its own."""
    offset = operand["offset"] + row * operand["strides"][0] * itemsize(operand["dtype"])
    return {**operand, "offset": offset, "shape": [1, *operand["shape"][1:]]}


def random_seed():
    """A fresh sampling seed for requests that give none."""
    return int(np.random.SeedSequence().entropy % (1 << 31))


class Slots:
    """The plan's batch rows as slots that sequences take and give back at any time.

    `admit` prefills sequences into free slots between decode steps, `step` queues one decode
    step of every admitted sequence, `poll` reads chosen ids back (`lookahead` steps behind) and
    ends sequences at EOS or their length, `finish` ends one early and frees its slot. Prefill
    programs run the new rows only (the others' lengths are 0: their KV cache, history and decode
    inputs are not written), so the running sequences go on untouched; each row's arithmetic is
    its own, so a greedy sequence gives the same ids alone or beside others.
    """

    def __init__(self, executor, eos_token_ids=(), lookahead=LOOKAHEAD):
        plan = executor.plan
        state = plan.get("generation")
        if state is None:
            raise PlanError(f"{plan.get('path', 'plan')}: has no logits output to sample from")
        eos = sorted(set(int(t) for t in eos_token_ids))
        slots = state["eos"]["shape"][0]
        if len(eos) > slots:
            raise InputError(f"{len(eos)} EOS ids given; the plan's sampler checks at most {slots}")
        self.executor, self.plan, self.state, self.eos = executor, plan, state, set(eos)
        self.lookahead = lookahead
        self.batch = plan["limits"]["max_batch"]
        decode_inputs = plan["programs"]["decode"]["inputs"]
        self._seq_lens = decode_inputs["seq_lens"]
        self._watched = [decode_inputs["tokens"], decode_inputs["seq_lens"]]
        self.owners = [None] * self.batch  # the sequence on each slot
        self._pending = deque()  # (fetch of the decode inputs, {slot: sequence} it chose ids for)
        options = np.zeros((self.batch, 4), dtype=np.int32)
        options[:, 2] = -1  # a free row never completes a prompt, so a prefill never samples it
        executor.reset()
        executor.write(state["options"], options)
        executor.write(state["eos"], np.array(eos + [-1] * (slots - len(eos)), dtype=np.int32))
        executor.write(self._seq_lens, np.zeros(self.batch, dtype=np.int32))

    def free(self):
        """Indices of the free slots."""
        return [slot for slot, owner in enumerate(self.owners) if owner is None]

    def running(self):
        """True while some admitted sequence has not ended."""
        return any(owner is not None for owner in self.owners)

    def admit(self, sequences):
        """Prefill `sequences` (at most as many as free slots) into free slots; the prefill's
        sampler chooses each one's first token. Raises InputError for one the plan cannot serve."""
        free = self.free()
        if len(sequences) > len(free):
            raise InputError(f"{len(sequences)} sequences given, {len(free)} free slots")
        for sequence in sequences:
            check_prompt(self.plan, sequence.prompt, sequence.max_new_tokens)
            if sequence.max_new_tokens < 1:
                raise InputError("a sequence needs at least 1 new token")
            sequence.sampling.check()
        rows = {}
        for slot, sequence in zip(free, sequences):
            self._load_row(slot, sequence)
            self.owners[slot], sequence.slot, sequence.queued = sequence, slot, 1
            rows[slot] = sequence.prompt
        for seq, tokens, start_pos, seq_lens in _chunks(self.plan, rows):
            self.executor.set_inputs(f"prefill_{seq}", tokens, start_pos, seq_lens)
            self.executor.launch(f"prefill_{seq}")
        self._pending.append((self.executor.fetch(self._watched), {s.slot: s for s in sequences}))

    def _load_row(self, slot, sequence):
        """Write a slot's sampler state: the prompt's history, its sampling settings."""
        sampling, prompt, state = sequence.sampling, sequence.prompt, self.state
        seed = sampling.seed if sampling.seed is not None else random_seed()
        history = np.zeros((1, state["history"]["shape"][1]), dtype=np.int32)
        history[0, :len(prompt)] = prompt
        params = [[sampling.temperature, sampling.top_p, sampling.repetition_penalty, 0.0]]
        self.executor.write(_row(state["history"], slot), history)
        self.executor.write(_row(state["params"], slot), np.array(params, dtype=np.float32))
        self.executor.write(_row(state["options"], slot),
                            np.array([[sampling.top_k, seed, len(prompt), 0]], dtype=np.int32))

    def step(self):
        """Queue one decode step for the admitted sequences that still lack tokens; returns
        False (and queues nothing) when none does."""
        owners = {slot: s for slot, s in enumerate(self.owners) if s is not None and s.queued < s.max_new_tokens}
        if not owners:
            return False
        self.executor.launch("decode")
        for sequence in owners.values():
            sequence.queued += 1
        self._pending.append((self.executor.fetch(self._watched), owners))
        return True

    def poll(self, on_token=None, wait=False):
        """Read back the ids of queued launches (all of them with `wait`, else those more than
        `lookahead` behind) and give each to `on_token(sequence, id)` in order; a sequence ends at
        an EOS id ("eos") or its length ("length"), and `on_token` may `finish` one itself."""
        while self._pending and (wait or len(self._pending) > self.lookahead):
            handle, owners = self._pending.popleft()
            tokens, seq_lens = handle.wait()
            for slot, sequence in owners.items():
                if sequence.done:
                    continue
                token = int(tokens[slot, 0])
                sequence.tokens.append(token)
                if token in self.eos:
                    self.finish(sequence, "eos")
                if on_token is not None:
                    on_token(sequence, token)
                if not sequence.done and (len(sequence.tokens) >= sequence.max_new_tokens or seq_lens[slot] == 0):
                    self.finish(sequence, "length")  # its own limit, or the plan's max sequence

    def finish(self, sequence, reason):
        """End `sequence` with `reason` (no-op if it has ended) and free its slot: its row takes
        no part in the next decode step."""
        if sequence.done:
            return
        sequence.finish_reason = reason
        slot = sequence.slot
        if slot is not None and self.owners[slot] is sequence:
            self.owners[slot] = None
            self.executor.write(_row(self._seq_lens, slot), np.zeros(1, dtype=np.int32))


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
    """Generate up to `max_new_tokens` per prompt, all prompts admitted at once into the slots;
    stops a sequence at an EOS id or a stop string.

    `on_token(sequence index, token id)` is called as ids arrive (streaming). Stop strings need
    `tokenizer`; the token completing one is kept. A seed makes sampling reproducible on the same
    plan and device (every prompt draws with the same seed).
    """
    prompts = check_request(prompts, max_new_tokens, eos_token_ids, stop_strings)
    check_prompts(executor.plan, prompts, max_new_tokens)
    if stop_strings and tokenizer is None:
        raise InputError("stop strings need a plan with a tokenizer")
    if executor.plan.get("generation") is None:
        raise PlanError(f"{executor.plan.get('path', 'plan')}: has no logits output to sample from")
    result = Generation([[] for _ in prompts], ["length"] * len(prompts), prompt_tokens=sum(map(len, prompts)))
    if max_new_tokens == 0:
        return result
    sampling = (sampling or SamplingParams()).check()
    if sampling.seed is None:
        sampling = replace(sampling, seed=random_seed())
    sequences = [Sequence(prompt, max_new_tokens, sampling) for prompt in prompts]
    index = {id(sequence): i for i, sequence in enumerate(sequences)}

    def take(sequence, token):
        if on_token is not None:
            on_token(index[id(sequence)], token)
        if stop_strings and not sequence.done and any(
                s in tokenizer.decode(sequence.tokens[-16:]) for s in stop_strings):
            slots.finish(sequence, "stop")

    started = time.perf_counter()
    slots = Slots(executor, eos_token_ids)
    slots.admit(sequences)
    slots.poll(take, wait=True)
    result.prefill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    while slots.running():
        if slots.step():
            slots.poll(take)
        else:  # every running sequence has its last step queued
            slots.poll(take, wait=True)
    slots.poll(wait=True)  # steps queued before the last stops were seen
    result.decode_seconds = time.perf_counter() - started
    result.tokens = [sequence.tokens for sequence in sequences]
    result.finish_reasons = [sequence.finish_reason for sequence in sequences]
    return result


def generate_greedy(executor, prompts, max_new_tokens, eos_token_id=None, on_token=None):
    """Greedy-decode up to `max_new_tokens` per prompt; returns the new token ids of each."""
    eos = () if eos_token_id is None else (eos_token_id,)
    return generate(executor, prompts, max_new_tokens, eos_token_ids=eos, on_token=on_token).tokens
