"""Time to first token for long prompts on the GPU: cgc's chunked prefill against PyTorch (HF
transformers with SDPA attention) run eagerly, through torch.compile, and captured in a CUDA graph.

Models as in benchmarks/decode.py (default: qwen3, llama-1b, qwen2-7b; bf16, random weights shared
by every peer), batch 1, random prompts of 512, 2048 and 8192 tokens. cgc's plans hold prefill
buckets of 512 and 2048 positions: a longer prompt runs as 2048-token chunks over the growing
cache. Time to first token (TTFT) is from the prompt's ids on the host to the first new id on the
host: cgc's `generate(..., 1)`; for the peers one forward pass with `logits_to_keep=1`, then argmax
(eager keeps HF's KV cache; the compiled and graph-captured peers run without one). Median of
--reps runs after warm-up. Each row also compares cgc's last-position logits with eager PyTorch's
(largest difference, and PyTorch's top-two gap, relative to its largest logit): random-weight
logits over long prompts are nearly flat, so first tokens can differ where the gap is smaller.
With --quants, cgc also runs plans compiled with --quant from the same checkpoint (peers "cgc
int8", "cgc int4", ...; their logits are not compared). Writes benchmarks/results/prefill-<gpu>[-<tag>].json.

    python benchmarks/prefill.py [--models qwen3,llama-1b,qwen2-7b] [--lengths 512,2048,8192] [--skip-compile]
                                 [--quants none,int8,int4] [--tag TAG]
    python benchmarks/prefill.py --export-only 90   # fill the kernel cache where tileiras works
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.decode import MODELS, build_checkpoint, model_benchmark_parser, remove_plan  # noqa: E402
from compiler.compile import CompileOptions, compile_plan, stderr_log  # noqa: E402

BUCKETS = (512, 2048)
PEERS = ("cgc", "pytorch eager", "torch.compile", "pytorch cuda-graph")


def _say(message):
    print(f"prefill: {message}", file=sys.stderr, flush=True)


def plan_options(key, lengths, sm, checkpoint=None, overrides=None, quant=None):
    """One-sequence plan holding the longest prompt plus its first token (weights quantized with `quant`)."""
    longest = max(lengths)
    return CompileOptions(preset=MODELS[key]["preset"], checkpoint=checkpoint, overrides=overrides or {},
                          dtype=MODELS[key]["dtype"], sms=(sm,), max_batch=1, max_seq=256 * -(-(longest + 1) // 256),
                          prefill_buckets=tuple(b for b in BUCKETS if b <= longest),
                          cache_dir=os.environ.get("CGC_CACHE_DIR"), quant=quant)


def export_only(sm, keys, lengths, workdir, quants=(None,)):
    """Fill the kernel cache from one-layer plans of each model's preset (same kernels as the run)."""
    for key in keys:
        for quant in quants:
            _say(f"compiling one layer of {MODELS[key]['name']} {quant or ''} for sm_{sm}")
            path = os.path.join(workdir, f"{key}.plan")
            compile_plan(MODELS[key]["graph"], path,
                         plan_options(key, lengths, sm, overrides={"num_hidden_layers": 1}, quant=quant), log=stderr_log)
            remove_plan(path)


def _median_seconds(run, reps):
    run()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_cgc(plan_path, prompt, reps):
    """(TTFT seconds, first token, last-position logits [V] float32) of cgc's chunked prefill."""
    from runtime.generate import generate, prefill
    from runtime.session import open_plan
    executor = open_plan(plan_path, device="gpu")
    try:
        token = generate(executor, [prompt], 1).tokens[0][0]
        seconds = _median_seconds(lambda: generate(executor, [prompt], 1), reps)
        return seconds, token, np.asarray(prefill(executor, [prompt])[0], dtype=np.float32)
    finally:
        executor.close()


def logits_check(ours, hf, prompt):
    """cgc's last-position logits against eager PyTorch's (same bf16 weights): the largest
    difference and PyTorch's gap between its top two logits, both relative to its largest |logit|
    (a first token can differ where the gap is below the difference)."""
    import torch
    with torch.no_grad():
        theirs = hf(torch.tensor([prompt], device=hf.device), logits_to_keep=1).logits[0, -1].float().cpu().numpy()
    scale = float(np.abs(theirs).max())
    top2 = np.sort(theirs)[-2:]
    return {"relative_error": float(np.abs(ours - theirs).max()) / scale,
            "pytorch_top2_gap": float(top2[1] - top2[0]) / scale}


def measure_torch(hf, prompt, reps, mode):
    """TTFT of one HF forward pass: 'eager', 'compile' (torch.compile) or 'graph' (CUDA graph)."""
    import torch
    ids = torch.tensor([prompt], device="cuda")
    host = torch.tensor([prompt]).pin_memory()

    def forward(tokens, use_cache):
        return hf(tokens, use_cache=use_cache, logits_to_keep=1).logits[:, -1].argmax(-1)

    if mode == "eager":
        def run():
            return int(forward(host.to("cuda", non_blocking=True), True))
    elif mode == "compile":
        compiled = torch.compile(lambda tokens: forward(tokens, False))

        def run():
            return int(compiled(host.to("cuda", non_blocking=True)))
    else:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                forward(ids, False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            chosen = forward(ids, False)

        def run():
            ids.copy_(host, non_blocking=True)
            graph.replay()
            return int(chosen)
    with torch.no_grad():
        token = run()
        return _median_seconds(run, reps), token


def run_model(key, args, sm, workdir, save):
    import torch
    model = MODELS[key]
    checkpoint = os.path.join(workdir, key)
    _say(f"building {model['name']} checkpoint")
    hf = build_checkpoint(key, checkpoint).to("cuda")
    hf.config._attn_implementation = "sdpa"
    plans = {}
    for quant in args.quants:
        plans[quant] = os.path.join(workdir, f"{key}-{quant or 'none'}.plan")
        _say(f"compiling {model['name']} {quant or ''}")
        compile_plan(model["graph"], plans[quant], plan_options(key, args.lengths, sm, checkpoint, quant=quant),
                     log=stderr_log)
    rows = []
    for length in args.lengths:
        prompt = np.random.default_rng(length).integers(0, hf.config.vocab_size, size=length).tolist()
        seconds, tokens, check = {}, {}, None
        for quant, plan_path in plans.items():
            peer = "cgc" if quant is None else f"cgc {quant}"
            _say(f"{model['name']}, {length} tokens: {peer}")
            seconds[peer], tokens[peer], logits = measure_cgc(plan_path, prompt, args.reps)
            if quant is None:
                check = logits_check(logits, hf, prompt)
        for peer, mode in zip(PEERS[1:], ("eager", "compile", "graph")):
            if mode == "compile" and args.skip_compile:
                continue
            _say(f"{model['name']}, {length} tokens: {peer}")
            seconds[peer], tokens[peer] = measure_torch(hf, prompt, args.reps, mode)
            torch.cuda.empty_cache()
        cgc = next(peer for peer in seconds if peer.startswith("cgc"))
        rows.append({"model": model["name"], "dtype": model["dtype"], "prompt_tokens": length,
                     "buckets": list(plan_options(key, args.lengths, sm).prefill_buckets),
                     "ttft_ms": {peer: 1e3 * s for peer, s in seconds.items()},
                     "cgc_speedup": {peer: s / seconds[cgc] for peer, s in seconds.items()},
                     "prompt_tokens_per_s": {peer: length / s for peer, s in seconds.items()},
                     "first_token": {peer: int(t) for peer, t in tokens.items()},
                     "last_logits_vs_pytorch_eager": check})
        save(rows)  # each length as it is measured: a run cut short keeps what it had
    for plan_path in plans.values():
        remove_plan(plan_path)
    shutil.rmtree(checkpoint, ignore_errors=True)
    del hf
    torch.cuda.empty_cache()
    return rows


def main():
    parser = model_benchmark_parser(__doc__, "qwen3,llama-1b,qwen2-7b")
    parser.add_argument("--lengths", default="512,2048,8192")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile peer")
    parser.add_argument("--quants", default="none", help="cgc plans to run: none (16-bit) and/or int8, int4, fp8")
    parser.add_argument("--tag", help="suffix of the results file name (prefill-<gpu>-<tag>.json)")
    args = parser.parse_args()
    args.models = args.models.split(",")
    unknown = [q for q in args.quants.split(",") if q not in ("none", "int8", "int4", "fp8")]
    if unknown:
        parser.error(f"--quants takes none, int8, int4 or fp8, got {unknown[0]!r}")
    args.quants = list(dict.fromkeys(None if q == "none" else q for q in args.quants.split(",")))
    args.lengths = [int(n) for n in args.lengths.split(",")]
    unknown = [m for m in args.models if m not in MODELS or m == "gpt2"]
    if unknown or min(args.lengths) < 1:
        parser.error(f"unknown or unsupported model {unknown[0]}" if unknown else "--lengths must be positive")
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        if args.export_only:
            export_only(args.export_only, args.models, args.lengths, workdir, args.quants)
            return
        import cupy
        import torch
        sm = int(cupy.cuda.Device().compute_capability)
        device = torch.cuda.get_device_name()
        rows = []
        path = os.path.join(args.out, "prefill-" + device.lower().replace(" ", "-") + (f"-{args.tag}" if args.tag else "") + ".json")
        for key in args.models:
            rows.extend(run_model(key, args, sm, workdir, lambda more: _save(path, device, sm, rows + more)))
    print(f"device: {device}; time to first token, ms (batch 1)")
    peers = [f"cgc {quant}" for quant in args.quants if quant] + list(PEERS)
    print(f"{'model':<22}{'tokens':>7}" + "".join(f"{peer:>20}" for peer in peers))
    for row in rows:
        print(f"{row['model']:<22}{row['prompt_tokens']:>7}"
              + "".join(f"{row['ttft_ms'].get(peer, float('nan')):>20.2f}" for peer in peers))
    _save(path, device, sm, rows)
    _say(f"wrote {path}")


def _save(path, device, sm, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump({"device": device, "sm": sm, "ttft": "prompt ids on the host to the first new id on the host, "
                   "median of reps after warm-up", "results": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
