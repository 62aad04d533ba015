"""Serving benchmark: `cgc serve` under Poisson request arrivals, measured through HTTP with the
`openai` client, against plain batch-B `generate` on the same plan (issue 22).

Workload: N requests (default 256), random token-id prompts of uniform length in [16, 512], 128
new tokens each (the server runs with --ignore-eos, so every request makes all of them),
arriving as a Poisson process at each rate (requests/s; "inf": all at once, saturation). Per
rate: output tokens/s, time to first token and inter-token latency p50/p99, and how many greedy
responses differ from plain `generate`'s ids for the same prompt (must be 0), and the clients'
CPU seconds (--clients processes share the requests; if their CPU time nears processes x the run's
duration, the clients limit the numbers), and the server process's CPU seconds. At saturation: the
ratio of the server's output tokens/s to plain `generate` over the same requests in batches of B
(goal >= 0.85). Writes benchmarks/results/serve-<device>.json.

    python benchmarks/serve.py                         # Qwen3-0.6B bf16 batch 8, on this GPU
    python benchmarks/serve.py --export-only 90        # fill the kernel cache (CGC_CACHE_DIR) where tileiras works
    python benchmarks/serve.py --plan PLAN             # an existing plan (max_seq >= 512 + 128)
    python benchmarks/serve.py --smoke --out DIR       # CPU: a tiny plan, a few requests (what CI runs)

The client needs the `openai` package; the server the `serve` extra (starlette, uvicorn).
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODELS = {  # plan recipes: graph, preset, dtype (random weights drawn by the compiler)
    "qwen3": {"name": "qwen3-0.6B", "graph": "qwen3", "preset": "qwen3-0.6b", "overrides": {}, "dtype": "bfloat16"},
    "tiny": {"name": "llama-tiny", "graph": "llama", "preset": "tiny", "overrides": {}, "dtype": "float32"},
}
SMOKE = dict(model="tiny", batch=4, requests=12, prompt_min=4, prompt_max=24, new_tokens=6, rates="20,inf",
             buckets="8,16", device="cpu", clients=2)


def _say(message):
    print(f"serve-bench: {message}", file=sys.stderr, flush=True)


def compile_options(args, sm):
    """The plan's compile options: batch B, max_seq holding the longest prompt and the new tokens."""
    from compiler.compile import CompileOptions
    model = MODELS[args.model]
    buckets = tuple(int(b) for b in args.buckets.split(","))
    return CompileOptions(preset=model["preset"], overrides=dict(model["overrides"]), dtype=model["dtype"],
                          sms=(sm,) if sm else (), max_batch=args.batch, max_seq=args.prompt_max + args.new_tokens,
                          prefill_buckets=buckets, cache_dir=os.environ.get("CGC_CACHE_DIR"))


def build_plan(args, sm, path):
    from compiler.compile import compile_plan, stderr_log
    _say(f"compiling {MODELS[args.model]['name']} batch {args.batch} for {f'sm_{sm}' if sm else 'the CPU'}")
    compile_plan(MODELS[args.model]["graph"], path, compile_options(args, sm), log=stderr_log)


def workload(args, vocab):
    """The requests' prompts (token ids), the same for every rate."""
    rng = np.random.default_rng(args.seed)
    lengths = rng.integers(args.prompt_min, args.prompt_max + 1, size=args.requests)
    return [rng.integers(0, vocab, size=int(n)).tolist() for n in lengths]


def measure_generate(plan_path, prompts, new_tokens, device):
    """(output tokens/s, each prompt's greedy ids) of plain `generate` over the prompts in batches
    of the plan's max batch (EOS ignored), after a warm-up batch per prefill bucket (graph capture)."""
    from runtime.generate import generate
    from runtime.session import open_plan
    executor = open_plan(plan_path, device=device, quiet=True)
    batch = executor.plan["limits"]["max_batch"]
    try:
        for length in executor.plan["limits"]["prefill_buckets"]:
            generate(executor, [prompts[0][:1] * length] * batch, 2)
        started = time.perf_counter()
        made = []
        for first in range(0, len(prompts), batch):
            made.extend(generate(executor, prompts[first:first + batch], new_tokens).tokens)
        seconds = time.perf_counter() - started
    finally:
        if hasattr(executor, "close"):
            executor.close()
    return sum(map(len, made)) / seconds, made


def start_server(plan_path, device):
    """A `python -m server` process on 127.0.0.1 (a free port); returns (process, base url)."""
    command = [sys.executable, "-m", "server", plan_path, "--port", "0", "--ignore-eos", "--max-queue", "100000",
               "--device", device, "--model-name", "bench"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    said = []
    for line in process.stderr:
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, found.group(1)
        said = (said + [line.rstrip()])[-5:]
    raise RuntimeError(f"the server did not start (exit {process.wait()}): " + " / ".join(said))


async def _one(client, index, prompt, new_tokens, delay, record):
    await asyncio.sleep(delay)
    sent = time.monotonic()  # CLOCK_MONOTONIC: comparable across the client processes
    times, ids, finish = [], [], None
    stream = await client.completions.create(model="bench", prompt=prompt, max_tokens=new_tokens, temperature=0,
                                             stream=True, extra_body={"return_token_ids": True})
    async for chunk in stream:
        if not chunk.choices:
            continue
        now = time.monotonic()
        chosen = (chunk.choices[0].model_extra or {}).get("token_ids") or []
        ids.extend(chosen)
        times.extend([now] * len(chosen))
        finish = chunk.choices[0].finish_reason or finish
    record.append({"index": index, "sent": sent, "times": times, "ids": ids, "finish": finish})


async def _client_jobs(url, jobs, new_tokens, warm, barrier):
    """One client process's share: warm-up requests, then (once every process is ready) its jobs
    [(index, prompt, arrival s)]; returns (records, CPU seconds spent on the jobs)."""
    import openai
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=3600) as client:
        await asyncio.gather(*(_one(client, -1, prompt, 2, 0.0, []) for prompt in warm))
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        record, cpu = [], time.process_time()
        await asyncio.gather(*(_one(client, i, prompt, new_tokens, arrival, record) for i, prompt, arrival in jobs))
        return record, time.process_time() - cpu


def _client_process(url, jobs, new_tokens, warm, barrier, results):
    results.put(asyncio.run(_client_jobs(url, jobs, new_tokens, warm, barrier)))


def run_rate(url, prompts, new_tokens, rate, seed, clients, expected=None, warm=None):
    """Send every prompt from `clients` processes (requests dealt round-robin), arrivals a Poisson
    process of `rate` per second (inf: all at once) timed from when every process is ready;
    `expected`: each prompt's ids from plain generate, which every greedy response must equal.
    `warm`: prompts each process sends first (default: one 1-token prompt)."""
    import multiprocessing
    rng = np.random.default_rng(seed)
    gaps = np.zeros(len(prompts)) if rate == float("inf") else rng.exponential(1.0 / rate, len(prompts))
    arrivals = np.cumsum(gaps) - gaps[0]
    jobs = [(i, prompt, float(arrival)) for i, (prompt, arrival) in enumerate(zip(prompts, arrivals))]
    context = multiprocessing.get_context("spawn")  # the parent may hold a CUDA context
    barrier, results = context.Barrier(clients), context.Queue()
    processes = [context.Process(target=_client_process, daemon=True,
                                 args=(url, jobs[k::clients], new_tokens, warm or [prompts[0][:1]], barrier, results))
                 for k in range(clients)]
    for process in processes:
        process.start()
    record, cpu = [], 0.0
    for _ in processes:
        part, seconds = results.get()
        record.extend(part)
        cpu += seconds
    for process in processes:
        process.join()
    return {**summarize(record, rate, new_tokens, expected), "client_processes": clients,
            "client_cpu_s": round(cpu, 3)}


def _cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_rates(url, rates, prompts, new_tokens, warm, seed, expected, clients, server_pid=None):
    """Every rate's row (the first run's clients send `warm` first: graph capture of every
    program on the server), with the server process's CPU seconds over the rate's run."""
    rows = []
    run_rate(url, warm, 2, float("inf"), 0, 1)
    for rate in rates:
        _say(f"rate {rate} req/s")
        before = _cpu_seconds(server_pid)
        rows.append(run_rate(url, prompts, new_tokens, rate, seed, clients, expected))
        after = _cpu_seconds(server_pid)
        rows[-1]["server_cpu_s"] = None if before is None or after is None else round(after - before, 2)
        _say(json.dumps(rows[-1]))
    return rows


def _ms(values, q):
    return round(float(np.percentile(values, q)) * 1e3, 3) if len(values) else None


def summarize(record, rate, new_tokens, expected=None):
    """One result row: throughput and latency percentiles of a rate's requests, and how many
    responses differ from the same prompt's ids under plain generate (must be 0: greedy ids do not
    depend on the slot or the neighbours)."""
    start = min(r["sent"] for r in record)
    end = max(r["times"][-1] if r["times"] else r["sent"] for r in record)
    ttft = [r["times"][0] - r["sent"] for r in record if r["times"]]
    itl = np.concatenate([np.diff(r["times"]) for r in record if len(r["times"]) > 1] or [np.zeros(0)])
    made = sum(len(r["times"]) for r in record)
    return {"rate_per_s": None if rate == float("inf") else rate, "requests": len(record),
            "incomplete": sum(len(r["times"]) != new_tokens or r["finish"] != "length" for r in record),
            "differ_from_generate": (None if expected is None else
                                     sum(r["ids"] != list(expected[r["index"]]) for r in record)),
            "duration_s": round(end - start, 4), "output_tokens": made,
            "output_tokens_per_s": round(made / (end - start), 2),
            "ttft_p50_ms": _ms(ttft, 50), "ttft_p99_ms": _ms(ttft, 99),
            "itl_p50_ms": _ms(itl, 50), "itl_p99_ms": _ms(itl, 99)}


def _rates(text):
    return [float("inf") if part.strip() == "inf" else float(part) for part in text.split(",") if part.strip()]


def _device_name(device):
    if device == "cpu":
        return "cpu"
    import cupy
    return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()


def run(args, plan_path):
    from runtime.plan import load_plan
    plan = load_plan(plan_path)
    limits = plan["limits"]
    if limits["max_seq"] < args.prompt_max + args.new_tokens:
        raise SystemExit(f"serve-bench: {plan_path}: max_seq {limits['max_seq']} < {args.prompt_max} + {args.new_tokens}")
    prompts = workload(args, plan["model"]["config"]["vocab_size"])
    _say(f"plain generate, batch {limits['max_batch']}, {len(prompts)} requests")
    baseline, expected = measure_generate(plan_path, prompts, args.new_tokens, args.device)
    _say(f"generate: {baseline:.1f} output tok/s")
    process, url = start_server(plan_path, args.device)
    try:
        warm = [prompts[0][:1] * b for b in limits["prefill_buckets"] if b <= args.prompt_max] or [prompts[0]]
        rows = run_rates(url, _rates(args.rates), prompts, args.new_tokens, warm, args.seed + 1, expected, args.clients,
                         process.pid)
    finally:
        process.terminate()
        exit_code = process.wait(timeout=120)
    saturated = [row for row in rows if row["rate_per_s"] is None]
    result = {"benchmark": "serve", "device": _device_name(args.device), "plan": os.path.basename(plan_path),
              "model": plan["model"]["name"], "dtype": plan["model"]["dtype"], "batch": limits["max_batch"],
              "requests": len(prompts), "prompt_tokens": [args.prompt_min, args.prompt_max],
              "new_tokens": args.new_tokens, "generate_output_tokens_per_s": round(baseline, 2), "rates": rows,
              "saturation_ratio_to_generate": (round(saturated[0]["output_tokens_per_s"] / baseline, 4)
                                               if saturated else None),
              "server_exit_code": exit_code}
    _print_table(result)
    return result


def _print_table(result):
    print(f"{result['model']} batch {result['batch']} on {result['device']}: generate "
          f"{result['generate_output_tokens_per_s']:.1f} tok/s; at saturation x{result['saturation_ratio_to_generate']}")
    print(f"{'rate/s':>8} {'tok/s':>10} {'TTFT p50':>9} {'p99 ms':>9} {'ITL p50':>9} {'p99 ms':>9} {'incomplete':>10} "
          f"{'differ':>6}")
    for row in result["rates"]:
        rate = "inf" if row["rate_per_s"] is None else f"{row['rate_per_s']:g}"
        print(f"{rate:>8} {row['output_tokens_per_s']:>10.1f} {row['ttft_p50_ms']:>9} {row['ttft_p99_ms']:>9} "
              f"{row['itl_p50_ms']:>9} {row['itl_p99_ms']:>9} {row['incomplete']:>10} {row['differ_from_generate']:>6}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen3", choices=sorted(MODELS), help="plan recipe (default qwen3)")
    parser.add_argument("--plan", help="use this plan instead of compiling one")
    parser.add_argument("--batch", type=int, default=8, help="the plan's slots (default 8)")
    parser.add_argument("--buckets", default="64,128,256,512", help="prefill buckets (default 64,128,256,512)")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--prompt-min", type=int, default=16)
    parser.add_argument("--prompt-max", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rates", default="4,8,16,32,inf", help="requests/s, comma-separated; inf: all at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, default=4,
                        help="client processes (default 4: one Python process could not read the streams at "
                             "saturation, its CPU time was 97%% of the run's)")
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--export-only", type=int, metavar="SM", help="only fill the kernel cache for SM and exit")
    parser.add_argument("--smoke", action="store_true", help="CPU check on a tiny plan: " + ", ".join(
        f"{k}={v}" for k, v in SMOKE.items()))
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    with tempfile.TemporaryDirectory() as workdir:
        if args.export_only:
            build_plan(args, args.export_only, os.path.join(workdir, "export.plan"))
            return 0
        plan_path = args.plan
        if plan_path is None:
            sm = None
            if args.device == "gpu":
                import cupy
                sm = int(cupy.cuda.Device().compute_capability)
            plan_path = os.path.join(workdir, f"{args.model}-b{args.batch}.plan")
            build_plan(args, sm, plan_path)
        result = run(args, plan_path)
    os.makedirs(args.out, exist_ok=True)
    name = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    path = os.path.join(args.out, f"serve-{name}.json")
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1)
    _say(f"wrote {path}")
    clean = all(row["incomplete"] == 0 and row["differ_from_generate"] == 0 for row in result["rates"])
    return 0 if clean and result["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
