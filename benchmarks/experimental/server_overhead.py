"""The serving path's CPU time per streamed token with the GPU taken out: `server.app` over an
executor whose launches cost nothing (random ids), all requests at once from client processes
(benchmarks/serve.py's). At saturation on the H200 the server process used a whole core
(benchmarks/results/serve-nvidia-h200.json): this times what bounds it, on any machine.

    python benchmarks/experimental/server_overhead.py [--slots 8] [--requests 256] [--new-tokens 128]
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks.serve import run_rate  # noqa: E402


class InstantExecutor:
    """The executor interface Slots uses, with launches that do nothing: every fetch reads random
    ids and every row still running."""

    def __init__(self, plan, seed=0):
        self.plan, self.rng = plan, np.random.default_rng(seed)
        self.batch = plan["limits"]["max_batch"]

    def reset(self):
        pass

    def write(self, operand, values):
        pass

    def set_inputs(self, program, tokens, start_pos, seq_lens):
        pass

    def launch(self, program):
        pass

    def fetch(self, operands):
        arrays = [self.rng.integers(3, 900, size=(self.batch, 1)), np.ones(self.batch, dtype=np.int64)]
        return SimpleNamespace(wait=lambda: arrays)


def serve(plan):
    """A uvicorn server of `plan` on the instant executor in a thread; returns (server, url)."""
    import uvicorn

    from server.app import Service, create_app
    from server.engine import Engine
    from server.metrics import Metrics
    metrics = Metrics()
    service = Service(Engine(InstantExecutor(plan), max_queue=100000, metrics=metrics), plan, "bench", metrics=metrics)
    listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{listener.getsockname()[1]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", help="also write the result as JSON to this file")
    args = parser.parse_args()
    from compiler.compile import CompileOptions, compile_plan
    from runtime.plan import load_plan
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "tiny.plan")
        compile_plan("llama", path, CompileOptions(preset="tiny", max_batch=args.slots,
                                                   max_seq=32 + args.new_tokens, prefill_buckets=(32,)))
        plan = load_plan(path)
    server, url = serve(plan)
    prompts = [np.random.default_rng(i).integers(3, 900, size=16).tolist() for i in range(args.requests)]
    run_rate(url, prompts[:args.slots], 2, float("inf"), 0, 1)  # warm-up
    cpu = time.process_time()
    row = run_rate(url, prompts, args.new_tokens, float("inf"), 0, args.clients)
    cpu = time.process_time() - cpu
    server.should_exit = True
    print(f"{row['output_tokens']} tokens in {row['duration_s']:.2f} s ({row['output_tokens_per_s']:.0f} tok/s) "
          f"over {args.slots} slots; server process CPU {cpu:.2f} s = {1e6 * cpu / row['output_tokens']:.1f} us "
          f"per token; clients {row['client_cpu_s']:.2f} s; incomplete {row['incomplete']}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"benchmark": "server_overhead", "machine": f"{os.cpu_count()} CPU cores, no GPU",
                       "slots": args.slots, "server_cpu_s": round(cpu, 3),
                       "server_cpu_us_per_token": round(1e6 * cpu / row["output_tokens"], 2), **row}, handle, indent=1)


if __name__ == "__main__":
    main()
