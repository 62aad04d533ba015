"""Where a plan's time goes on the GPU: each launch of one program timed alone (a CUDA graph of
repeated copies, so host launch overhead is left out), summed per kernel template, then the whole
program, the sub-chains of each template's launches, and the program less each per-layer op's
launches (what that op costs in the chain). On the device.

    python benchmarks/profile_plan.py PLAN [--program decode] [--position 100] [--rows 1] [--reps 20] [--timeline]

--rows N gives tokens to the first N rows only (the others' lengths 0), as when the server admits
one request into a batch plan.

--timeline also records one replay of the whole program with CUPTI (torch.profiler, so PyTorch
must be installed) and prints, per kernel role, its mean duration, how far its start precedes
the previous kernel's end (programmatic launches start early) and how far its end follows the
previous end: that last is what the kernel adds to the chain.

Decode programs are timed as the executor runs them: programmatic dependent launches (PDL) in
one graph. Lone times can mislead there: on the H100, gpt2's batch-1 decode launches once summed
to 223 us alone while their chain took 436 us (kernels filling a whole SM each, see
compiler/tiles.py one_row); the sub-chains show which neighbours cost.
"""

import argparse
import contextlib
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.driver_launch import DependentLaunch  # noqa: E402
from runtime.plan import load_plan  # noqa: E402


class ChainTimer:
    """Graph time per repetition of a sequence of a program's launches."""

    def __init__(self, executor, program, reps):
        self.launches = executor._programs[program][1]
        self.templates = [executor.plan["kernels"][launch["kernel"]]["template"]
                          for launch in executor.plan["programs"][program]["launches"]]
        self.dependent = CupyExecutor._dependent(executor.plan["programs"][program])
        self.stream = executor.stream
        self.reps = reps
        self.graphs = []  # freed with the executor, before its modules (see CupyExecutor.close)

    def __call__(self, indices, dependent=None):
        import cupy
        dependent = self.dependent if dependent is None else dependent
        chained = [DependentLaunch(self.launches[i][0].ptr, *self.launches[i][1:4]) for i in indices]
        self.stream.synchronize()
        self.stream.begin_capture()
        for _ in range(self.reps):
            for index, launch in zip(indices, chained):
                if dependent:
                    launch.launch(self.stream.ptr)
                else:
                    function, grid, block, args, _ = self.launches[index]
                    function(grid, block, args, stream=self.stream)
        graph = self.stream.end_capture()
        self.graphs.append(graph)
        graph.launch(self.stream)
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(self.stream)
        graph.launch(self.stream)
        end.record(self.stream)
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) * 1e3 / self.reps

    def by_template(self):
        """{template: time of that template's launches alone, as one chain in program order}."""
        return {template: self([i for i, name in enumerate(self.templates) if name == template])
                for template in sorted(set(self.templates))}


def profile(plan, program, reps, position=0, filled=None):
    """([(op, template, grid, microseconds)] for every launch of `program` alone,
    {chain name: microseconds}); the executor holding the graphs is closed before returning."""
    spec = plan["programs"][program]
    with _program_timer(plan, program, reps, position, filled) as timer:
        rows = [(launch["op"], template, grid, timer([index]))
                for index, (launch, template, (_, grid, _, _, _)) in
                enumerate(zip(spec["launches"], timer.templates, timer.launches))]
        every = list(range(len(rows)))
        chains = {"whole program": timer(every)}
        if timer.dependent:
            chains["whole program, plain launches"] = timer(every, dependent=False)
        chains.update((f"{template} launches only", micros) for template, micros in timer.by_template().items())
        roles = [_role(launch["op"]) for launch in spec["launches"]]
        for role in sorted({role for role in roles if roles.count(role) > 1}):  # per-layer ops
            chains[f"without {role} launches"] = timer([i for i in every if roles[i] != role])
        return rows, chains


@contextlib.contextmanager
def _program_timer(plan, program, reps, position, filled=None):
    """A ChainTimer over `program` of a fresh executor, its inputs random tokens with `position`
    tokens already in the KV cache (in the first `filled` rows, default all; the others' lengths 0);
    the executor holding the graphs is closed on exit."""
    spec = plan["programs"][program]
    batch, seq = spec["batch"], spec["seq"]
    tokens = np.random.default_rng(0).integers(0, 1000, size=(batch, seq)).astype(np.int32)
    executor = CupyExecutor(plan, use_graphs=False)
    seq_lens = np.full(batch, seq)  # tokens in this run
    seq_lens[batch if filled is None else filled:] = 0
    executor.set_inputs(program, tokens, np.full(batch, position), seq_lens)
    timer = ChainTimer(executor, program, reps)
    try:
        yield timer
    finally:
        timer.graphs.clear()  # graphs before the modules their kernels live in
        executor.close()


def timeline(plan, program, position=0, reps=4, filled=None):
    """[(op, template, duration, start less the previous kernel's end, end less the previous
    kernel's end)] in us of one program run in the middle of `reps` replays of its graph, from
    CUPTI's kernel records."""
    import json
    import tempfile
    import torch
    ops = [launch["op"] for launch in plan["programs"][program]["launches"]]
    with _program_timer(plan, program, reps, position, filled) as timer:
        timer(list(range(len(timer.launches))))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as recorder:
            timer.graphs[-1].launch(timer.stream)
            timer.stream.synchronize()
        with tempfile.TemporaryDirectory() as workdir:
            path = os.path.join(workdir, "trace.json")
            recorder.export_chrome_trace(path)
            with open(path, encoding="utf-8") as handle:
                events = [event for event in json.load(handle)["traceEvents"] if event.get("cat") == "kernel"]
        return timeline_rows(events, ops, timer.templates, reps)


def timeline_rows(events, ops, templates, reps):
    """timeline's rows from kernel events ({ts, dur} in us) of `reps` runs of the launches `ops`."""
    count = len(ops)
    if len(events) != reps * count:
        raise RuntimeError(f"CUPTI recorded {len(events)} kernels, not {reps} x {count}")
    events = sorted(events, key=lambda event: event["ts"])
    middle = reps // 2
    previous = events[middle * count - 1]
    previous_end = previous["ts"] + previous["dur"]
    rows = []
    for op, template, event in zip(ops, templates, events[middle * count:(middle + 1) * count]):
        end = event["ts"] + event["dur"]
        rows.append((op, template, event["dur"], event["ts"] - previous_end, end - previous_end))
        previous_end = end
    return rows


def _role(op):
    """An op's name without its layer prefix ("l3.o_proj" -> "o_proj")."""
    layer, _, role = op.partition(".")
    return role if role and layer[:1] == "l" and layer[1:].isdigit() else op


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("--program", default=None)
    parser.add_argument("--position", type=int, default=0, help="tokens already in the KV cache")
    parser.add_argument("--rows", type=int, default=None, help="rows given tokens (default all)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--timeline", action="store_true", help="also the kernels' CUPTI timeline (needs torch)")
    args = parser.parse_args()
    plan = load_plan(args.plan)
    program = args.program or next(name for name in plan["programs"] if name.startswith("prefill"))
    rows, chains = profile(plan, program, args.reps, args.position, args.rows)
    by_template = defaultdict(float)
    for op, template, grid, micros in rows:
        by_template[template] += micros
    total = sum(by_template.values())
    print(f"{program}: {len(rows)} launches, sum of lone launches {total:.1f} us")
    for template, micros in sorted(by_template.items(), key=lambda item: -item[1]):
        print(f"  {template:<10} {micros:8.1f} us  {100 * micros / total:5.1f}%")
    print("chains (one graph, launches in program order; 'without X': the rest, so the whole program's time")
    print("less that one is what X's launches cost in the chain):")
    for name, micros in chains.items():
        print(f"  {name:<32} {micros:8.1f} us")
    print("slowest launches:")
    for op, template, grid, micros in sorted(rows, key=lambda row: -row[3])[:8]:
        print(f"  {op:<28} {template:<10} grid {grid}  {micros:7.1f} us")
    if args.timeline:
        roles = defaultdict(list)
        for op, template, *times in timeline(plan, program, args.position, filled=args.rows):
            roles[(_role(op), template)].append(times)
        print("timeline (one run, CUPTI), per kernel role: mean duration, start and end less the previous")
        print("kernel's end (the end: what it adds to the chain), and the ends summed:")
        for (role, template), values in roles.items():
            duration, start, added = np.mean(values, axis=0)
            print(f"  {role + ' (' + template + ')':<36} x{len(values):<3} {duration:7.2f} {start:7.2f} {added:7.2f} us"
                  f"  sum {sum(row[2] for row in values):7.1f} us")


if __name__ == "__main__":
    main()
