"""The serving loop: requests take the plan's slots as they free up, between decode steps.

One thread owns the executor and runs `runtime.generate.Slots`: each turn it admits waiting
requests into free slots (their prefill runs between two decode steps; the others go on), queues
one decode step, and hands the ids read back to each request's text stream. HTTP handlers live on
the asyncio loop; they `submit` a request and read its events from an asyncio queue, and a
request's `cancel` (client gone) ends it at the next turn, freeing its slot.
"""

import asyncio
import threading
import time
from collections import deque

from runtime.errors import InputError
from runtime.generate import Sequence, Slots
from server.text import TextStream

LOOKAHEAD = 4  # decode steps queued ahead of the read-back: the GPU keeps busy while the HTTP thread holds the GIL
# When more requests wait than slots are free, admission waits up to this many turns for running
# sequences that end within as many steps, so their slots join one prefill: a prefill of one row
# in a batch-8 plan costs 60% of one of eight rows (Qwen3-0.6B, 512 tokens, H200: 11.7 vs 19.6 ms,
# about 9 decode steps; benchmarks/results/prefill-profile-nvidia-h200.json).
MERGE_STEPS = 8


class QueueFull(Exception):
    """Every slot is busy and the waiting queue holds its maximum."""


class ShuttingDown(Exception):
    """The server stopped admitting requests."""


class Request:
    """One generation request and the events it delivers to its handler's asyncio queue:
    ("token", (text, id)) per id chosen (text: what became safe to send, maybe ''; a last
    ("token", (text, None)) may flush held-back text), then ("done", finish_reason) or ("error", msg)."""

    def __init__(self, prompt, max_tokens, sampling, stop, tokenizer, loop):
        self.sequence = Sequence(list(prompt), max_tokens, sampling)
        self.text = TextStream(tokenizer, stop) if tokenizer is not None else None
        self.events = asyncio.Queue()
        self.loop = loop
        self.cancelled = False
        self.arrived = time.perf_counter()
        self.first_token_at = self.last_token_at = None

    @property
    def prompt_tokens(self):
        return len(self.sequence.prompt)

    @property
    def completion_tokens(self):
        return len(self.sequence.tokens)

    @property
    def finish_reason(self):
        """OpenAI's name for why it ended: "stop" (EOS or a stop string) or "length"."""
        reason = self.sequence.finish_reason
        return "stop" if reason in ("eos", "stop") else reason

    def cancel(self):
        """Ask the engine to end this request (its client went away); safe from any thread."""
        self.cancelled = True


class Engine:
    """Runs requests on an executor's slots in a background thread."""

    def __init__(self, executor, tokenizer=None, eos_token_ids=(), max_queue=64, metrics=None):
        self.executor, self.tokenizer, self.max_queue, self.metrics = executor, tokenizer, max_queue, metrics
        self.slots = Slots(executor, eos_token_ids, lookahead=LOOKAHEAD)
        self._outbox = []  # (request, event) to hand to the asyncio side at the end of the turn
        self.waiting = deque()
        self.active = {}  # id(sequence) -> Request
        self._lock = threading.Condition()
        self._stopping = self._draining = False
        self._deferred = 0  # turns in a row that admission waited for slots about to free
        self.error = None
        self._thread = threading.Thread(target=self._run, name="cgc-engine", daemon=True)

    def start(self):
        """Start the loop's thread (once; later calls do nothing)."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    @property
    def batch(self):
        return self.slots.batch

    @property
    def draining(self):
        """True once the engine stopped admitting requests."""
        return self._draining

    def queue_depth(self):
        return len(self.waiting)

    def busy_slots(self):
        return self.batch - len(self.slots.free())

    def submit(self, request):
        """Queue `request`; raises QueueFull or ShuttingDown instead of waiting."""
        with self._lock:
            if self._draining or self.error is not None:
                raise ShuttingDown("the server is shutting down" if self._draining else f"engine failed: {self.error}")
            if len(self.active) + len(self.waiting) >= self.batch + self.max_queue:
                raise QueueFull(f"all {self.batch} slots are busy and {len(self.waiting)} requests wait "
                                f"(--max-queue {self.max_queue}); retry later")
            self.waiting.append(request)
            self._lock.notify()

    def wake(self):
        """Make the loop look at cancellations now (it sleeps while idle)."""
        with self._lock:
            self._lock.notify()

    def drain(self):
        """Stop admitting new requests (503); those waiting or running go on to their end."""
        with self._lock:
            self._draining = True

    def stop(self, timeout=None):
        """Stop admitting, cancel what waits or runs, and join the thread."""
        with self._lock:
            self._stopping = self._draining = True
            for request in list(self.active.values()):
                request.cancel()
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self):
        try:
            while self._turn():
                self._deliver()
            self._deliver()
        except Exception as exc:  # a device failure: fail every request, report unhealthy
            self.error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                requests = list(self.active.values()) + list(self.waiting)
                self.active.clear()
                self.waiting.clear()
            for request in requests:
                self._fail(request, self.error)
            self._deliver()

    def _turn(self):
        """One turn of the loop; False when stopped and idle."""
        for request in [r for r in self.active.values() if r.cancelled]:  # their slots free up for this turn
            self.slots.finish(request.sequence, "cancelled")
            self._end(request)
        with self._lock:
            while not self.waiting and not self.active and not self._stopping:
                self._lock.wait()
            if self._stopping:
                for request in self.waiting:
                    request.cancel()
                    self._finish(request, "cancelled")
                self.waiting.clear()
                if not self.active:
                    return False
            if any(request.cancelled for request in self.waiting):  # their clients left while they waited
                for request in [r for r in self.waiting if r.cancelled]:
                    self.waiting.remove(request)
                    self._finish(request, "cancelled")
            admitted = []
            free = len(self.slots.free())
            if self.waiting and free and self._merge_later(free):
                free = 0
            while self.waiting and len(admitted) < free:
                admitted.append(self.waiting.popleft())
        if admitted:
            self._admit(admitted)
        if self.slots.step():
            self.slots.poll(self._on_token)
        else:  # every running request has its last step queued (or none runs)
            self.slots.poll(self._on_token, wait=True)
        for request in [r for r in self.active.values() if r.sequence.done]:
            self._end(request)
        return True

    def _merge_later(self, free):
        """True to leave the free slots empty this turn: more requests wait than slots are free
        and a running sequence ends within MERGE_STEPS steps (at most MERGE_STEPS turns in a row)."""
        ending = any(request.sequence.max_new_tokens - len(request.sequence.tokens) <= MERGE_STEPS
                     for request in self.active.values())
        if len(self.waiting) > free and ending and self._deferred < MERGE_STEPS:
            self._deferred += 1
            return True
        self._deferred = 0
        return False

    def _admit(self, requests):
        for request in requests:
            self.active[id(request.sequence)] = request
        try:
            self.slots.admit([r.sequence for r in requests])
        except InputError as exc:  # checked before submit; should one slip through, it fails alone
            for request in requests:
                del self.active[id(request.sequence)]
                self._fail(request, str(exc))
            return
        if self.metrics is not None:
            for request in requests:
                self.metrics.admitted(request)

    def _fail(self, request, message):
        if self.metrics is not None:
            self.metrics.count("error")
        self._emit(request, "error", message)

    def _on_token(self, sequence, token):
        request = self.active.get(id(sequence))
        if request is None:
            return
        now = time.perf_counter()
        if self.metrics is not None:
            self.metrics.token(request, now)
        if request.first_token_at is None:
            request.first_token_at = now
        request.last_token_at = now
        chunk = ""
        if request.text is not None and sequence.finish_reason != "eos":  # EOS has no text
            chunk = request.text.push(token)
            if request.text.stopped:
                self.slots.finish(sequence, "stop")
        self._emit(request, "token", (chunk, token))

    def _end(self, request):
        del self.active[id(request.sequence)]
        if request.text is not None and request.sequence.finish_reason != "cancelled":
            tail = request.text.flush()
            if tail:
                self._emit(request, "token", (tail, None))
        self._finish(request, request.sequence.finish_reason)

    def _finish(self, request, reason):
        if request.sequence.finish_reason is None:
            request.sequence.finish_reason = reason
        if self.metrics is not None:
            self.metrics.finished(request)
        self._emit(request, "done", request.finish_reason)

    def _emit(self, request, kind, value):
        self._outbox.append((request, (kind, value)))

    def _deliver(self):
        """Hand the turn's events to their asyncio queues: one wake-up of each loop per turn."""
        batches = {}
        for request, event in self._outbox:
            batches.setdefault(request.loop, []).append((request.events, event))
        self._outbox = []
        for loop, batch in batches.items():
            loop.call_soon_threadsafe(_put_all, batch)


def _put_all(batch):
    for queue, event in batch:
        queue.put_nowait(event)
