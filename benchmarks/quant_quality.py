"""How far each --quant mode moves a model's logits from its unquantized plan (GPU, random weights).

For each model: the 16-bit plan decodes greedily from a random prompt for --steps tokens; every
quantized plan then runs the same token sequence (teacher-forced: prefill of the prompt, one
decode step per token) and each step's logits are compared with the 16-bit plan's: relative
error (max |difference| / max |reference logit|) and whether the top-1 token agrees. Random
weights are not a trained model's: this reports, it does not tune.
Writes benchmarks/results/quant-quality-<gpu>.json.

    python benchmarks/quant_quality.py [--models qwen3,llama-1b] [--modes int8,int4,fp8] [--steps 256] [--device cpu]

With --device cpu the plans run on the NumPy executor (no --sm; the same arithmetic the GPU
kernels are checked against), for a machine without a GPU.
    python benchmarks/quant_quality.py --export-only 90 [--models ...]   # fill the kernel cache
"""

import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.decode import MODELS, PROMPT, build_checkpoint, compile_model, model_benchmark_parser, remove_plan  # noqa: E402


def _say(message):
    print(f"quant_quality: {message}", file=sys.stderr, flush=True)


def teacher_forced_logits(executor, prompt, continuation):
    """Logits [len(continuation), V] of the steps predicting each token of `continuation`
    (the first from the prompt's prefill), on a batch-1 plan."""
    executor.reset()
    tokens = np.array([prompt], dtype=np.int32)
    rows = [executor.run(f"prefill_{len(prompt)}", tokens, [0], [len(prompt)])["logits"][-1]]  # the last row
    for step, token in enumerate(continuation[:-1]):
        rows.append(executor.run("decode", [[token]], [len(prompt) + step], [1])["logits"][0])
    return np.stack([np.asarray(row, dtype=np.float32) for row in rows])


def compare(reference, logits):
    """Per-step relative errors and top-1 agreement of `logits` against `reference`."""
    errors = np.abs(logits - reference).max(axis=1) / np.abs(reference).max(axis=1)
    agree = logits.argmax(axis=1) == reference.argmax(axis=1)
    return {"relative_error_mean": float(errors.mean()), "relative_error_max": float(errors.max()),
            "top1_agreement": float(agree.mean())}


def run_model(key, modes, steps, sm, workdir, device="gpu"):
    from runtime.generate import generate
    from runtime.session import open_plan
    checkpoint = os.path.join(workdir, key)
    _say(f"building {MODELS[key]['name']}")
    build_checkpoint(key, checkpoint)
    prompt = np.random.default_rng(0).integers(0, MODELS[key]["kwargs"]["vocab_size"], size=PROMPT).tolist()
    results = {}
    reference = None
    for mode in (None, *modes):
        plan = os.path.join(workdir, f"{key}-{mode or 'base'}.plan")
        compile_model(key, 1, steps, sm, checkpoint, plan, quant=mode)
        executor = open_plan(plan, device=device)
        try:
            if mode is None:
                continuation = generate(executor, [prompt], steps, eos_token_ids=()).tokens[0]
            logits = teacher_forced_logits(executor, prompt, continuation)
        finally:
            executor.close()
            remove_plan(plan)
        if mode is None:
            reference = logits
        else:
            results[mode] = compare(reference, logits)
            _say(f"{MODELS[key]['name']} {mode}: {results[mode]}")
    return {"model": MODELS[key]["name"], "dtype": MODELS[key]["dtype"], "steps": steps, "modes": results}


def main():
    parser = model_benchmark_parser(__doc__, "qwen3,llama-1b")
    parser.add_argument("--modes", default="int8,int4,fp8")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--device", default="gpu", choices=("gpu", "cpu"))
    args = parser.parse_args()
    keys, modes = args.models.split(","), args.modes.split(",")
    if args.export_only:
        from benchmarks.decode import export_only
        with tempfile.TemporaryDirectory() as workdir:
            export_only(args.export_only, keys, [1], args.steps, workdir, [None, *modes])
        return
    if args.device == "gpu":
        import cupy
        import torch
        sm, device = int(cupy.cuda.Device().compute_capability), torch.cuda.get_device_name()
    else:
        sm, device = None, "cpu numpy"
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for key in keys:
            rows.append(run_model(key, modes, args.steps, sm, workdir, args.device))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"quant-quality-{device.lower().replace(' ', '-')}.json")
    with open(path, "w") as handle:
        json.dump({"device": device, "sm": sm, "seconds": time.perf_counter() - started,
                   "method": "teacher-forced on the 16-bit plan's greedy tokens; relative error = max |d| / "
                             "max |reference| per step", "results": rows}, handle, indent=2)
    for row in rows:
        for mode, numbers in row["modes"].items():
            print(f"{row['model']:<16} {mode:<5} rel. error mean {numbers['relative_error_mean']:.4f} "
                  f"max {numbers['relative_error_max']:.4f}  top-1 agreement {numbers['top1_agreement']:.3f}")


if __name__ == "__main__":
    main()
