"""Serving metrics in the Prometheus text format (version 0.0.4), for GET /metrics.

Counters of requests by outcome and of tokens, gauges of the queue, the slots and recent output
tokens/s, histograms of time to first token and inter-token latency. The engine thread records,
the HTTP thread renders; one lock guards both.
"""

import threading
import time
from collections import deque

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RATE_WINDOW = 10.0  # seconds of output tokens the tokens/s gauge averages over


class Histogram:
    """Cumulative buckets, sum and count of observed values."""

    def __init__(self, buckets):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value):
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.sum += value
        self.count += 1

    def lines(self, name):
        out = [f'{name}_bucket{{le="{bound}"}} {count}' for bound, count in zip(self.buckets, self.counts)]
        return out + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}",
                      f"{name}_count {self.count}"]


class Metrics:
    """What the server counts; `render(engine)` gives the /metrics text."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = {}  # outcome -> count
        self.prompt_tokens = self.generation_tokens = 0
        self.ttft, self.itl = Histogram(TTFT_BUCKETS), Histogram(ITL_BUCKETS)
        self._recent = deque()  # times of recent output tokens

    def count(self, outcome):
        """One request ended with `outcome` (stop, length, cancelled, error, rejected_*, invalid)."""
        with self._lock:
            self.requests[outcome] = self.requests.get(outcome, 0) + 1

    def admitted(self, request):
        with self._lock:
            self.prompt_tokens += request.prompt_tokens

    def token(self, request, now):
        with self._lock:
            self.generation_tokens += 1
            if request.first_token_at is None:
                self.ttft.observe(now - request.arrived)
            else:
                self.itl.observe(now - request.last_token_at)
            self._recent.append(now)
            while self._recent and self._recent[0] < now - RATE_WINDOW:
                self._recent.popleft()

    def finished(self, request):
        self.count(request.finish_reason or "cancelled")

    def render(self, engine):
        """The Prometheus text of every metric, engine gauges read now."""
        now = time.perf_counter()
        with self._lock:
            while self._recent and self._recent[0] < now - RATE_WINDOW:
                self._recent.popleft()
            rate = len(self._recent) / RATE_WINDOW
            lines = ["# HELP cgc_requests_total Requests by outcome.", "# TYPE cgc_requests_total counter"]
            lines += [f'cgc_requests_total{{outcome="{k}"}} {v}' for k, v in sorted(self.requests.items())]
            lines += _metric("cgc_prompt_tokens_total", "counter", "Prompt tokens prefilled.", self.prompt_tokens)
            lines += _metric("cgc_generation_tokens_total", "counter", "Tokens generated.", self.generation_tokens)
            lines += _metric("cgc_generation_tokens_per_second", "gauge",
                             f"Output tokens per second over the last {RATE_WINDOW:.0f} s.", f"{rate:.3f}")
            lines += _metric("cgc_queue_depth", "gauge", "Requests waiting for a slot.", engine.queue_depth())
            lines += _metric("cgc_slots_busy", "gauge", "Slots holding a request.", engine.busy_slots())
            lines += _metric("cgc_slots_total", "gauge", "Slots of the plan (its max batch).", engine.batch)
            lines += _metric("cgc_slot_occupancy", "gauge", "Busy slots over all slots.",
                             f"{engine.busy_slots() / engine.batch:.4f}")
            for name, help_text, histogram in (
                    ("cgc_time_to_first_token_seconds", "Arrival to first token.", self.ttft),
                    ("cgc_inter_token_latency_seconds", "Between two tokens of a request.", self.itl)):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram", *histogram.lines(name)]
        return "\n".join(lines) + "\n"


def _metric(name, kind, help_text, value):
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
