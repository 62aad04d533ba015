"""Where a plan's time goes on the GPU: each launch of one program timed alone (a CUDA graph of
repeated copies, so host launch overhead is left out), summed per kernel template. On the device.

    python benchmarks/profile_plan.py PLAN [--program prefill_128] [--reps 20]
"""

import argparse
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402


def profile(plan, program, reps):
    """[(op, template, grid, microseconds)] for every launch of `program`."""
    import cupy
    executor = CupyExecutor(plan, use_graphs=False)
    spec = plan["programs"][program]
    batch, seq = spec["batch"], spec["seq"]
    tokens = np.random.default_rng(0).integers(0, 1000, size=(batch, seq)).astype(np.int32)
    executor.set_inputs(program, tokens, np.zeros(batch), np.full(batch, seq))
    _, launches, _ = executor._programs[program]
    rows = []
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    stream = executor.stream
    for launch, (function, grid, block, args, _) in zip(spec["launches"], launches):
        # a graph of `reps` copies of this one launch: GPU time without host launch overhead
        function(grid, block, args, stream=stream)
        stream.synchronize()
        stream.begin_capture()
        for _ in range(reps):
            function(grid, block, args, stream=stream)
        graph = stream.end_capture()
        graph.launch(stream)
        start.record(stream)
        graph.launch(stream)
        end.record(stream)
        end.synchronize()
        del graph
        template = plan["kernels"][launch["kernel"]]["template"]
        rows.append((launch["op"], template, grid, cupy.cuda.get_elapsed_time(start, end) * 1e3 / reps))
    graph_start, graph_end = cupy.cuda.Event(), cupy.cuda.Event()
    executor.use_graphs = True
    executor.launch(program)
    graph_start.record(executor.stream)
    for _ in range(reps):
        executor.launch(program)
    graph_end.record(executor.stream)
    graph_end.synchronize()
    return rows, cupy.cuda.get_elapsed_time(graph_start, graph_end) * 1e3 / reps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("--program", default=None)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    plan = load_plan(args.plan)
    program = args.program or next(name for name in plan["programs"] if name.startswith("prefill"))
    rows, graph_us = profile(plan, program, args.reps)
    by_template = defaultdict(float)
    for op, template, grid, micros in rows:
        by_template[template] += micros
    total = sum(by_template.values())
    print(f"{program}: {len(rows)} launches, sum of lone launches {total:.1f} us, graph replay {graph_us:.1f} us")
    for template, micros in sorted(by_template.items(), key=lambda item: -item[1]):
        print(f"  {template:<10} {micros:8.1f} us  {100 * micros / total:5.1f}%")
    print("slowest launches:")
    for op, template, grid, micros in sorted(rows, key=lambda row: -row[3])[:8]:
        print(f"  {op:<28} {template:<10} grid {grid}  {micros:7.1f} us")


if __name__ == "__main__":
    main()
