"""What one hand-off between CTAs costs on the GPU: a kernel boundary (what every decode launch
pays) against a grid-wide barrier inside one launch (what a persistent decode kernel, whose CTAs
wait on each other's results instead of on kernel ends, would pay instead).

    python benchmarks/experimental/sync_latency.py --export-only 90   # compile the kernels here (needs cuda.tile)
    python benchmarks/experimental/sync_latency.py [--ctas 128]        # on the device (needs cupy)

boundary: chains of launches of a G-CTA kernel that waits for the launch before it (programmatic
dependent launch in a CUDA graph, as decode programs run), then each CTA reads its value and writes
it back plus one: microseconds per launch, from the difference of two chain lengths.
barrier: one launch of G CTAs passing B grid-wide barriers: each CTA writes its value, adds one
to a counter (release), spins on the counter (acquire) until all G have added theirs, then reads
its neighbour's value: microseconds per barrier, from the difference of two barrier counts.
All G CTAs must be resident at once (G no more than the SMs). Results go to
benchmarks/results/sync-latency-<gpu>.json.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from runtime.cupy_executor import device_sm  # noqa: E402
from runtime.driver_launch import DependentLaunch  # noqa: E402

BOUNDARY = """import cuda.tile as ct


@ct.kernel
def kernel(data):
    ct.grid_dependency_control_wait()
    ct.grid_dependency_control_launch_dependents()
    value = ct.load(data, index=(ct.bid(0),), shape=(1,), allow_tma=False)
    ct.store(data, index=(ct.bid(0),), tile=value + 1, allow_tma=False)
"""

BARRIER = """import cuda.tile as ct

BARRIERS = {barriers}


@ct.kernel
def kernel(counter, data):
    me = ct.bid(0)
    ctas = ct.num_blocks(0)
    value = ct.load(data, index=(me,), shape=(1,), allow_tma=False)
    for step in range(BARRIERS):
        ct.store(data, index=(me,), tile=value + 1, allow_tma=False)
        ct.atomic_add(counter, 0, 1, memory_order=ct.MemoryOrder.RELEASE)
        arrived = ct.atomic_add(counter, 0, 0, memory_order=ct.MemoryOrder.ACQUIRE)
        while arrived < (step + 1) * ctas:
            arrived = ct.atomic_add(counter, 0, 0, memory_order=ct.MemoryOrder.ACQUIRE)
        value = ct.load(data, index=((me + 1) % ctas,), shape=(1,), allow_tma=False)
    ct.store(data, index=(me,), tile=value, allow_tma=False)
"""

CHAINS = (8, 72)  # launches per chain (boundary) and barriers per launch (barrier)
OPERANDS = {"boundary": [("int32", 1)], "barrier": [("int32", 1), ("int32", 1)]}
CACHE = os.path.join("artifacts", "cache_sync")


def sources():
    """{(kind, count): cuTile module source}."""
    found = {("boundary", count): BOUNDARY for count in CHAINS}
    found.update({("barrier", count): BARRIER.format(barriers=count) for count in CHAINS})
    return found


def _index_path(cache_dir, sm):
    return os.path.join(cache_dir, f"sync-latency-sm_{sm}.json")


def export(sm, cache_dir):
    """Compile every kernel for `sm` into `cache_dir` (cgc's kernel cache) and index them there, so
    the device finds them without the compiler's toolchain."""
    from compiler.cutile_export import cache_key, export_source
    index = {}
    for (kind, count), source in sources().items():
        exported = export_source(f"sync_{kind}", source, OPERANDS[kind], sm, cache_dir)
        index[f"{kind}-{count}"] = cache_key(source, OPERANDS[kind], sm)
        print(f"sync_latency: {kind} x{count}: {exported.symbol}, {exported.block_threads} threads", file=sys.stderr)
    with open(_index_path(cache_dir, sm), "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=1)


def _cached(kind, count, sm, cache_dir):
    """(cubin bytes, symbol, threads) of a kernel export() compiled."""
    try:
        with open(_index_path(cache_dir, sm), encoding="utf-8") as handle:
            stem = os.path.join(cache_dir, json.load(handle)[f"{kind}-{count}"])
        with open(stem + ".json", encoding="utf-8") as handle:
            meta = json.load(handle)
        with open(stem + ".cubin", "rb") as handle:
            return handle.read(), meta["symbol"], meta["block_threads"]
    except (OSError, KeyError):
        raise SystemExit(f"sync_latency: no {kind} kernel for sm_{sm} in {cache_dir}: "
                         f"run --export-only {sm} there first") from None


def _args(*arrays):  # cuTile's convention: pointer, then each dim's size, then each dim's stride
    import numpy as np
    args = []
    for array in arrays:
        args += [np.uint64(array.data.ptr), *(np.int32(d) for d in array.shape),
                 *(np.int32(s // array.itemsize) for s in array.strides)]
    return args


def measure(ctas, sm, cache_dir, reps=20):
    """{"boundary_us": per launch, "barrier_us": per barrier} at `ctas` CTAs."""
    import cupy
    stream = cupy.cuda.Stream(non_blocking=True)
    modules, graphs, times = [], [], {}
    data, counter = cupy.zeros(ctas, dtype=cupy.int32), cupy.zeros(1, dtype=cupy.int32)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    with stream:
        for kind in ("boundary", "barrier"):
            for count in CHAINS:
                image, symbol, threads = _cached(kind, count, sm, cache_dir)
                module = cupy.cuda.function.Module()
                module.load(image)
                modules.append(module)
                function = module.get_function(symbol)
                args = _args(data) if kind == "boundary" else _args(counter, data)
                launch = DependentLaunch(function.ptr, (ctas, 1, 1), (threads, 1, 1), args)
                best = float("inf")
                if kind == "boundary":  # one graph of `count` chained launches
                    stream.begin_capture()
                    for _ in range(count):
                        launch.launch(stream.ptr)
                    graph = stream.end_capture()
                    graphs.append(graph)
                for _ in range(reps):
                    if kind == "barrier":
                        counter.fill(0)
                    start.record(stream)
                    if kind == "boundary":
                        graph.launch(stream)
                    else:
                        launch.launch(stream.ptr)
                    end.record(stream)
                    end.synchronize()
                    best = min(best, cupy.cuda.get_elapsed_time(start, end) * 1e3)
                times[kind, count] = best
    stream.synchronize()
    del graph
    graphs.clear()  # before the modules their kernels live in
    modules.clear()
    low, high = CHAINS
    return {f"{kind}_us": (times[kind, high] - times[kind, low]) / (high - low) for kind in ("boundary", "barrier")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-only", type=int, metavar="SM", help="compile the kernels for this SM and stop")
    parser.add_argument("--ctas", default="32,128", help="comma-separated CTA counts (at most the SMs)")
    parser.add_argument("--cache", default=os.environ.get("CGC_CACHE_DIR", CACHE))
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    args = parser.parse_args()
    if args.export_only:
        export(args.export_only, args.cache)
        return
    import cupy
    sm = device_sm(cupy)
    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    rows = [{"ctas": int(ctas), **measure(int(ctas), sm, args.cache)} for ctas in args.ctas.split(",")]
    print(f"device: {device}")
    print(f"{'CTAs':>5} {'kernel boundary (us)':>21} {'grid barrier (us)':>18}")
    for row in rows:
        print(f"{row['ctas']:>5} {row['boundary_us']:>21.2f} {row['barrier_us']:>18.2f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "sync-latency-" + device.lower().replace(" ", "-") + ".json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"device": device, "sm": sm, "chains": list(CHAINS),
                   "boundary_us": "per launch of a chain of programmatic dependent launches in a CUDA graph",
                   "barrier_us": "per grid-wide barrier (release add, acquire spin) inside one launch",
                   "results": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
