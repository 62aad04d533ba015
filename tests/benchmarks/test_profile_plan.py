"""benchmarks/profile_plan.py's pure parts: op roles and the CUPTI timeline rows."""

import pytest


def test_profile_plan_names_per_layer_ops_without_their_layer():
    from benchmarks.profile_plan import _role
    assert [_role(op) for op in ("l0.qkv_proj", "l27.o_proj", "embed", "lm_head", "ln_f.x")] == [
        "qkv_proj", "o_proj", "embed", "lm_head", "ln_f.x"]


def test_profile_plan_timeline_takes_the_middle_run_and_what_each_kernel_adds():
    from benchmarks.profile_plan import timeline_rows
    ops, templates = ["embed", "l0.qkv", "l0.attention"], ["embed", "matmul", "attention"]
    # two runs; each kernel starts 1 us before the previous one ends (programmatic launches)
    events, clock = [], 0.0
    for _ in range(2):
        for duration in (2.0, 5.0, 4.0):
            start = clock - 1.0
            events.append({"ts": start, "dur": duration})
            clock = start + duration
    rows = timeline_rows(events[::-1], ops, templates, reps=2)  # any order: sorted by start
    assert [row[:2] for row in rows] == list(zip(ops, templates))
    assert [row[2:] for row in rows] == [(2.0, -1.0, 1.0), (5.0, -1.0, 4.0), (4.0, -1.0, 3.0)]
    with pytest.raises(RuntimeError, match="recorded 5 kernels, not 2 x 3"):
        timeline_rows(events[:5], ops, templates, reps=2)
