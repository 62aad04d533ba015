"""Prefill-forward benchmark on the GPU: cgc vs plain PyTorch eager, torch.compile and HF transformers.

Workloads (issue 3): the seed workload (gpt2 tile-medium, batch 8, seq 128, vocab 50257, fp32,
TF32 matmuls for everyone) and GPT-2 124M (batch 8, seq 128, fp16). All peers share one set of
random weights (a HF checkpoint written first, which cgc compiles). Needs cuda.tile + tileiras
(the plan is compiled here for this GPU). Writes benchmarks/results/forward-<gpu>.json and .png.

    python benchmarks/forward.py [--iters 50] [--out benchmarks/results]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402

WORKLOADS = [
    {"name": "tile-medium fp32", "config": dict(n_layer=6, n_embd=128, n_head=4), "dtype": "float32"},
    {"name": "gpt2-124M fp16", "config": dict(n_layer=12, n_embd=768, n_head=12), "dtype": "float16"},
]
BATCH, SEQ, VOCAB = 8, 128, 50257
# Ceilings measured on the H100 (docs/tuning.md): dense bf16/fp16 763 TFLOP/s, copy 2.95 TB/s.
# TF32 runs at half the fp16 tensor-core rate.
PEAK_FLOPS = {"float16": 763e12, "float32": 381e12}
COPY_BANDWIDTH = 2.95e12


def _time_cuda(function, iters):
    import torch
    for _ in range(3):
        function()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        function()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def _time_cgc(executor, program, iters):
    """ms per forward: back-to-back graph replays between two events on the executor's stream, as
    the peers are timed on theirs."""
    import cupy
    for _ in range(3):
        executor.launch(program)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record(executor.stream)
    for _ in range(iters):
        executor.launch(program)
    end.record(executor.stream)
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / iters


def _floor_ms(config, dtype):
    d, layers = config["n_embd"], config["n_layer"]
    tokens = BATCH * SEQ
    params = layers * 12 * d * d + VOCAB * d
    flops = 2 * tokens * params + 2 * BATCH * layers * SEQ * SEQ * d  # causal attention: half of 4*S*S*d
    weight_bytes = (layers * 12 * d * d + 2 * VOCAB * d) * (2 if dtype == "float16" else 4)
    return max(flops / PEAK_FLOPS[dtype], weight_bytes / COPY_BANDWIDTH) * 1e3, flops


def plan_options(workload, sm, checkpoint=None):
    """Compile options of a workload's plan (random weights when no checkpoint)."""
    overrides = {} if checkpoint else dict(workload["config"])
    return CompileOptions(checkpoint=checkpoint, overrides=overrides, dtype=workload["dtype"], sms=(sm,),
                          max_batch=BATCH, max_seq=SEQ, prefill_buckets=(SEQ,), prompt_logits=True,  # as the peers
                          cache_dir=os.environ.get("CGC_CACHE_DIR"))


def export_only(sm, workdir):
    """Fill the kernel cache with every cubin the benchmark needs (on a machine with tileiras)."""
    for workload in WORKLOADS:
        compile_plan("gpt2", os.path.join(workdir, "export.plan"), plan_options(workload, sm))


def run_workload(workload, iters, sm, workdir):
    import torch
    import transformers
    torch_dtype = {"float32": torch.float32, "float16": torch.float16}[workload["dtype"]]
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=1024, **workload["config"])
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    checkpoint = os.path.join(workdir, workload["name"].replace(" ", "_"))
    hf.save_pretrained(checkpoint, safe_serialization=True)
    plan_path = os.path.join(checkpoint, "model.plan")
    started = time.perf_counter()
    compile_plan("gpt2", plan_path, plan_options(workload, sm, checkpoint))
    compile_s = time.perf_counter() - started

    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(BATCH, SEQ)).astype(np.int32)
    executor = CupyExecutor(load_plan(plan_path))
    executor.set_inputs(f"prefill_{SEQ}", tokens, np.zeros(BATCH), np.full(BATCH, SEQ))
    program = f"prefill_{SEQ}"


    logits = executor.run(program, tokens, np.zeros(BATCH), np.full(BATCH, SEQ))["logits"].reshape(BATCH, SEQ, VOCAB)
    results = {}
    with torch.no_grad():
        hf = hf.to("cuda", torch_dtype)
        state = {k: v for k, v in hf.state_dict().items()}
        from benchmarks.torch_gpt import TorchGPT
        plain = TorchGPT(state, config.n_layer, config.n_head)
        token_tensor = torch.tensor(tokens, device="cuda", dtype=torch.long)
        reference = plain(token_tensor).float().cpu().numpy()
        error = float(np.abs(logits - reference).max() / np.abs(reference).max())
        results["cgc"] = _time_cgc(executor, program, iters)
        results["pytorch eager"] = _time_cuda(lambda: plain(token_tensor), iters)
        compiled = torch.compile(plain)
        results["torch.compile"] = _time_cuda(lambda: compiled(token_tensor), iters)
        results["HF transformers eager"] = _time_cuda(lambda: hf(token_tensor).logits, iters)
    floor_ms, flops = _floor_ms(workload["config"], workload["dtype"])
    return {"workload": workload["name"], "batch": BATCH, "seq": SEQ, "vocab": VOCAB, "dtype": workload["dtype"],
            "ms": results, "floor_ms": floor_ms, "flops": flops, "cgc_max_rel_err_vs_pytorch": error,
            "compile_s": compile_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--export-only", type=int, metavar="SM", help="only fill the kernel cache for SM and exit")
    args = parser.parse_args()
    if args.export_only:
        with tempfile.TemporaryDirectory() as workdir:
            export_only(args.export_only, workdir)
        return
    import torch
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    import cupy
    sm = int(cupy.cuda.Device().compute_capability)
    device = torch.cuda.get_device_name()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for workload in WORKLOADS:
            rows.append(run_workload(workload, args.iters, sm, workdir))
    print(f"device: {device}")
    print(f"{'workload':<18} {'peer':<22} {'ms':>8} {'cgc speedup':>12} {'floor frac':>10}")
    for row in rows:
        for peer, ms in row["ms"].items():
            print(f"{row['workload']:<18} {peer:<22} {ms:>8.3f} {ms / row['ms']['cgc']:>11.2f}x "
                  f"{row['floor_ms'] / ms:>10.3f}")
        print(f"{row['workload']:<18} floor {row['floor_ms']:.3f} ms; cgc max rel err vs PyTorch "
              f"{row['cgc_max_rel_err_vs_pytorch']:.2e}; compile {row['compile_s']:.1f} s")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "forward-" + device.lower().replace(" ", "-"))
    with open(stem + ".json", "w") as handle:
        json.dump({"device": device, "sm": sm, "results": rows}, handle, indent=2)
    _chart(rows, device, stem + ".png")


def _chart(rows, device, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4))
    for axis, row in zip(np.atleast_1d(axes), rows):
        peers = list(row["ms"])
        axis.bar(peers, [row["ms"][p] for p in peers], color=["tab:green"] + ["tab:gray"] * (len(peers) - 1))
        axis.axhline(row["floor_ms"], color="tab:red", linestyle="--", label="hardware floor")
        axis.set_title(f"{row['workload']}, batch {row['batch']} x seq {row['seq']}")
        axis.set_ylabel("ms per forward (lower is better)")
        axis.tick_params(axis="x", rotation=20)
        axis.legend()
    figure.suptitle(f"Prefill forward on {device}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
