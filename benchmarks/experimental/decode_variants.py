"""Candidate decode tile rules on the GPU: each variant is the shipped TileRules with a few fields
replaced (compiler/tiles.py), under which the decode benchmark's models compile (batch 1, or
--batch sequences); its decode step is then timed as one chain of programmatic dependent launches
in a CUDA graph (the way the executor replays it) and its output is checked against the shipped
rules' plan.

    python benchmarks/experimental/decode_variants.py --export-only 90   # fill CGC_CACHE_DIR (tileiras)
    python benchmarks/experimental/decode_variants.py [--variants shipped,bf16-mma] [--models gpt2,qwen3]
                                                      [--carveout 100] [--position 100] [--batch 8]

Variants compose with "+" (bf16-mma+attention-kv-64). Per variant and model it prints the step
time, with --carveout also the step time with every kernel's preferred shared-memory carveout set
to that percent (a runtime setting, no recompile), each template's launches alone as one chain,
the decode logits' largest difference from the shipped plan's relative to their largest magnitude
(same prefilled prompts, same tokens), and how many of the greedy tokens match. Adds the run to
benchmarks/results/decode-variants-<gpu>.json after the runs already there. Variants measured and
rejected are listed, with their numbers, in docs/tuning.md.
"""

import argparse
import ctypes
import dataclasses
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from benchmarks.decode import MODELS, PROMPT, built_checkpoints, compile_model, remove_plan  # noqa: E402
from compiler.tiles import SHIPPED  # noqa: E402

VARIANTS = {  # name: {TileRules field: its value under the variant, from its current one}
    "shipped": {},
    "mma-decode": {"one_row_hints": lambda hints: {"float32": hints["float32"]}},  # 16-bit one-row: MMA tiles
    "bf16-mma": {"one_row_hints": lambda hints: {k: v for k, v in hints.items() if k != "bfloat16"}},
    "mma-occupancy-2": {"mma_decode": lambda tiles: {**tiles, "occupancy": 2}},
    "mma-latency-2": {"deep_k": lambda depth: 1 << 30},  # latency 2 (and shallow K steps) at every depth
    "one-row-latency-2": {"one_row": lambda tiles: {**tiles, "weight_latency": 2}},
    "attention-occupancy-1": {"decode_attention": lambda hints: {k: v for k, v in hints.items() if k != "occupancy"}},
    "attention-occupancy-3": {"decode_attention": lambda hints: {**hints, "occupancy": 3}},
    "attention-kv-64": {"decode_attention": lambda hints: {**hints, "tile_kv": 64}},
    "attention-kv-128": {"decode_attention": lambda hints: {**hints, "tile_kv": 128}},
    "attention-kv-prefetch-2": {"decode_attention": lambda hints: {**hints, "kv_prefetch": 2}},  # before the wait
    "in-out-weights": {"out_in_max_batch": lambda limit: 0},  # every linear weight stays [in, out]
    "out-in-weights": {"out_in_max_batch": lambda limit: 1 << 30},  # store_out_in at any batch
    "wide-in-out": {"in_out_one_row_fill": lambda fill: 0},  # only narrow and gate+up linears [out, in]
    # 8-row [N, K] one-row tiles 1024 deep at any K and CTA count
    "out-in-k-1024": {"out_in_k": lambda table: {**table, 8: (1024, 1024)}, "out_in_deep_fill": lambda fill: 0},
    # decode attention on one CTA per head, at most 2 per head, split in caches of any length, or
    # split launches of at most 128 CTAs
    "kv-splits-1": {"kv_splits": lambda splits: 1},
    "kv-splits-2": {"kv_splits": lambda splits: 2},
    "kv-split-short": {"kv_split_min_tiles": lambda tiles: 1},
    "kv-split-ctas-128": {"kv_split_ctas": lambda ctas: 128},
}
RESULTS_NOTE = ("runs in order; in each, 'shipped' names the rules (compiler/tiles.py SHIPPED) every variant "
                "replaces fields of; logits_error and greedy_matches compare a variant with the run's shipped plan, "
                "torch_float32_error (--torch-reference) with PyTorch's float32 logits")
_CARVEOUT = 9  # CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT


def _say(message):
    print(f"decode_variants: {message}", file=sys.stderr, flush=True)


def variant(name, rules=SHIPPED):
    """`rules` under variant `name` ("a+b" composes, left to right)."""
    for part in name.split("+"):
        if part not in VARIANTS:
            raise ValueError(f"unknown variant '{part}' (have: {', '.join(VARIANTS)})")
        rules = dataclasses.replace(rules, **{field: change(getattr(rules, field))
                                              for field, change in VARIANTS[part].items()})
    return rules


def compiled_variants(keys, names, sm, new_tokens, workdir, batch=1):
    """Yield (model, variant, plan path) of `batch`-sequence plans compiled under each variant, one
    at a time; each plan (and its weights file) is deleted once the next one is asked for."""
    for key, checkpoint in built_checkpoints(keys, workdir):
        for name in names:
            _say(f"compiling {MODELS[key]['name']} under {name} for sm_{sm}")
            path = os.path.join(workdir, f"{key}-{name}.plan")
            compile_model(key, batch, new_tokens, sm, checkpoint, path, variant(name))
            yield key, name, path
            remove_plan(path)


def _set_carveout(functions, percent):
    driver = ctypes.CDLL("libcuda.so.1")
    for function in functions:
        status = driver.cuFuncSetAttribute(ctypes.c_void_p(function.ptr), _CARVEOUT, ctypes.c_int(percent))
        if status:
            raise RuntimeError(f"cuFuncSetAttribute(carveout {percent}) failed with CUDA error {status}")


def measure(path, prompts, new_tokens, position, carveout, reps=20):
    """Step time(s), decode logits after `prompts` ([B, V]) and greedy tokens (flat) of the plan at `path`."""
    from benchmarks.profile_plan import ChainTimer
    from runtime.generate import generate, prefill
    from runtime.session import open_plan
    executor = open_plan(path, device="gpu")
    timer = ChainTimer(executor, "decode", reps)
    try:
        batch = len(prompts)
        prefill(executor, prompts)
        logits = executor.run("decode", [p[-1:] for p in prompts], [len(p) for p in prompts], [1] * batch)["logits"]
        tokens = generate(executor, prompts, new_tokens).tokens
        executor.set_inputs("decode", [t[-1:] for t in tokens], [position] * batch, [1] * batch)
        tokens = [token for sequence in tokens for token in sequence]
        every = list(range(len(timer.launches)))
        row = {"step_us": min(timer(every) for _ in range(3))}
        row["template_chains_us"] = timer.by_template()
        if carveout is not None:
            _set_carveout({id(launch[0]): launch[0] for launch in timer.launches}.values(), carveout)
            row[f"step_us_carveout_{carveout}"] = min(timer(every) for _ in range(3))
        return row, logits, tokens
    finally:
        timer.graphs.clear()  # graphs before the modules their kernels live in
        executor.close()


def relative_error(values, reference):
    """Largest difference from `reference`, relative to its largest magnitude."""
    return float(np.abs(values - reference).max() / np.abs(reference).max())


def torch_logits(checkpoint, tokens, device="cuda"):
    """Last-position logits of `tokens` by the HF model at `checkpoint` run in float32 (its weights
    widened exactly): the reference both the shipped plan and a variant are checked against."""
    import torch
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
    model = model.to(device).eval()
    try:
        with torch.no_grad():
            return model(torch.tensor([tokens], device=device)).logits[0, -1].cpu().numpy()
    finally:
        del model
        if device == "cuda":
            torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,qwen3", help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; '+' composes")
    parser.add_argument("--new-tokens", type=int, default=128, help="as benchmarks/decode.py (cache keys)")
    parser.add_argument("--position", type=int, default=100, help="KV-cache length the step is timed at")
    parser.add_argument("--batch", type=int, default=1, help="sequences per plan (decode rows)")
    parser.add_argument("--carveout", type=int, metavar="PERCENT", help="also time with this shared-memory carveout")
    parser.add_argument("--torch-reference", action="store_true",
                        help="also check each variant's decode logits against PyTorch's in float32")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    parser.add_argument("--export-only", type=int, metavar="SM", help="only fill the kernel cache for SM and exit")
    args = parser.parse_args()
    keys, names = args.models.split(","), args.variants.split(",")
    names = ["shipped"] + [name for name in names if name != "shipped"]  # the reference, measured first
    for name in names:
        variant(name)  # unknown names fail here, before any compile
    with tempfile.TemporaryDirectory() as workdir:
        if args.export_only:
            for _ in compiled_variants(keys, names, args.export_only, args.new_tokens, workdir, args.batch):
                pass
            return
        import cupy
        sm = int(cupy.cuda.Device().compute_capability)
        device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        os.makedirs(args.out, exist_ok=True)
        result_path = os.path.join(args.out, "decode-variants-" + device.lower().replace(" ", "-") + ".json")
        runs, rows, references, torch_references = _earlier_runs(result_path), [], {}, {}
        run = {"date": time.strftime("%Y-%m-%d"), "shipped": _shipped_rules(), "position": args.position,
               "batch": args.batch, "results": rows}
        for key, name, path in compiled_variants(keys, names, sm, args.new_tokens, workdir, args.batch):
            vocab = MODELS[key]["kwargs"]["vocab_size"]
            prompts = np.random.default_rng(0).integers(0, vocab, size=(args.batch, PROMPT)).tolist()
            _say(f"measuring {MODELS[key]['name']} under {name}")
            row, logits, tokens = measure(path, prompts, args.new_tokens, args.position, args.carveout)
            reference_logits, reference_tokens = references.setdefault(key, (logits, tokens))
            if args.torch_reference:
                if key not in torch_references:  # the checkpoint of `key` exists while its plans compile
                    torch_references[key] = torch_logits(os.path.join(workdir, key), prompts[0] + prompts[0][-1:])
                row["torch_float32_error"] = relative_error(logits[0], torch_references[key])
            row.update(model=MODELS[key]["name"], variant=name, logits_error=relative_error(logits, reference_logits),
                       greedy_matches=sum(a == b for a, b in zip(tokens, reference_tokens)), new_tokens=len(tokens))
            rows.append(row)
            _print_row(row, args.batch)
            with open(result_path, "w") as handle:  # after every row: a run cut short keeps what it measured
                json.dump({"device": device, "sm": sm, "note": RESULTS_NOTE, "runs": runs + [run]}, handle, indent=1)


def _earlier_runs(path):
    """The runs an earlier invocation wrote to `path` (kept: each run names the rules it measured against)."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return json.load(handle).get("runs", [])


def _shipped_rules():
    """This checkout's shipped tile rules, which each run's variants are measured against."""
    return json.loads(json.dumps(dataclasses.asdict(SHIPPED), default=list))


def _print_row(row, batch):
    times = "  ".join(f"{key.replace('step_us', 'step')} {value:7.1f} us" for key, value in row.items()
                      if key.startswith("step_us"))
    chains = " ".join(f"{template} {value:.1f}" for template, value in row["template_chains_us"].items())
    torch_error = f"  vs torch fp32 {row['torch_float32_error']:.1e}" if "torch_float32_error" in row else ""
    print(f"{row['model']:<11} {row['variant']:<36} {times}  ({batch * 1e6 / row['step_us']:5.0f} tok/s)  "
          f"logits err {row['logits_error']:.1e}{torch_error}  greedy {row['greedy_matches']}/{row['new_tokens']}  "
          f"[alone: {chains}]", flush=True)


if __name__ == "__main__":
    main()
