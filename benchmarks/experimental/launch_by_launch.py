"""Run a plan's programs one launch at a time on the GPU, synchronizing after each, and print every
launch's op, template, grid, tiles and time: where a program hangs (with --all, the last
"launching" line names the kernel that never returned), faults or spends its time, without CUDA
graphs or dependent launches.

    python benchmarks/experimental/launch_by_launch.py PLAN [--programs prefill_16,decode] [--all]

Prefill runs a random prompt of the bucket's length in every row; decode then runs one step from
its end. Without --all, only launches of at least --slow-ms milliseconds and each program's first
launch are printed (the output stays short on 300-launch models). Run it under `timeout`.
"""

import argparse
import sys
import time

import numpy as np


def _say(started, message):
    print(f"[{time.perf_counter() - started:8.2f} s] {message}", flush=True)


def run(plan_path, programs, show_all, slow_ms):
    from runtime.cupy_executor import CupyExecutor
    from runtime.plan import load_plan
    started = time.perf_counter()
    executor = CupyExecutor(load_plan(plan_path), use_graphs=False)
    plan = executor.plan
    _say(started, f"opened {plan_path}")
    batch, vocab = plan["limits"]["max_batch"], plan["model"]["config"]["vocab_size"]
    prompt_end = 0
    for name in programs:
        seq = plan["programs"][name]["seq"]
        tokens = np.random.default_rng(0).integers(0, vocab, size=(batch, seq)).astype(np.int32)
        start = np.full(batch, 0 if name != "decode" else prompt_end, np.int32)
        executor.set_inputs(name, tokens, start, np.full(batch, seq, np.int32))
        prompt_end = max(prompt_end, seq) if name != "decode" else prompt_end
        _, launches, _ = executor._programs[name]
        for index, (launch, bound) in enumerate(zip(plan["programs"][name]["launches"], launches)):
            function, grid, block, args, _ = bound
            kernel = plan["kernels"][launch["targets"][f"sm_{executor.sm}"]["kernel"]]
            tiles = {k: v for k, v in kernel["constants"].items() if k.startswith("tile") or k in ("occupancy",)}
            if show_all or index == 0:
                _say(started, f"{name} {launch['op']} {kernel['template']} grid {grid} {tiles}: launching")
            began = time.perf_counter()
            function(grid, block, args, stream=executor.stream)
            executor.stream.synchronize()
            elapsed = (time.perf_counter() - began) * 1e3
            if show_all or elapsed >= slow_ms:
                _say(started, f"{name} {launch['op']} {kernel['template']} grid {grid} {tiles}: {elapsed:.3f} ms")
        _say(started, f"{name}: all {len(launches)} launches returned")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("--programs", help="comma-separated (default: the smallest prefill, then decode)")
    parser.add_argument("--all", action="store_true", help="print every launch, before and after it runs")
    parser.add_argument("--slow-ms", type=float, default=2.0, help="print launches at least this slow (default 2)")
    args = parser.parse_args(argv)
    from runtime.plan import load_plan
    programs = args.programs.split(",") if args.programs else default_programs(load_plan(args.plan))
    run(args.plan, programs, args.all, args.slow_ms)


def default_programs(plan):
    """The smallest prefill program, then decode."""
    names = plan["programs"]
    prefills = sorted((name for name in names if name != "decode"), key=lambda name: names[name]["seq"])
    return prefills[:1] + ["decode"]


if __name__ == "__main__":
    sys.exit(main())
