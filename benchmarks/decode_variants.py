"""Candidate decode tile rules on the GPU: each variant patches compiler/tiles.py's tables (or the
rendered kernels, or a lowering or weight-layout rule) while the decode benchmark's models compile
(batch 1, or --batch sequences), then its decode step is timed as one chain of programmatic
dependent launches in a CUDA graph (the way the executor replays it) and its output is checked
against the shipped rules' plan.

    python benchmarks/decode_variants.py --export-only 90        # fill CGC_CACHE_DIR (tileiras)
    python benchmarks/decode_variants.py [--variants shipped,bf16-mma] [--models gpt2,qwen3]
                                         [--carveout 100] [--position 100] [--batch 8]

Variants compose with "+" (bf16-mma+gate-up-gemv). Per variant and model it prints the step time,
with --carveout also the step time with every kernel's preferred shared-memory carveout set to
that percent (a runtime setting, no recompile), each template's launches alone as one chain, the
decode logits' largest difference from the shipped plan's relative to their largest magnitude
(same prefilled prompts, same tokens), and how many of the greedy tokens match. Adds the run to
benchmarks/results/decode-variants-<gpu>.json after the runs already there.
"""

import argparse
import contextlib
import ctypes
import glob
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.decode import MODELS, PROMPT, built_checkpoints, compile_model  # noqa: E402
from compiler import cutile_export, lower, tiles  # noqa: E402
from compiler.passes import store_out_in  # noqa: E402

ONE_ROW_TILES = {"tile_k": 128, "occupancy": 2}  # one-row gate+up without spills (256-deep ones spill)


def _prefetch(steps):  # decode matmuls (MMA and one-row) load `steps` K steps' weights before the wait
    return {"GEMV_DECODE": lambda table: {**table, "prefetch": steps},
            "TABLE": lambda table: {**table, (None, "decode"): {**table[None, "decode"], "prefetch": steps}}}


_LATE_TRIGGER = re.compile(r"( *ct\.grid_dependency_control_wait\(\)\n)( *)ct\.grid_dependency_control_launch_dependents\(\)\n")


def _exit_trigger(render):
    def rendered(template, constants):
        source = render(template, constants)
        if template == "attention" and constants.get("phase") == "decode":
            source = source.replace("    ct.grid_dependency_control_launch_dependents()\n", "")
        return source
    return rendered


def _early_trigger(render):
    def rendered(template, constants):
        return _LATE_TRIGGER.sub(r"\2ct.grid_dependency_control_launch_dependents()\n\1", render(template, constants))
    return rendered


_ROW_ACCESSES = {  # one-row matmuls' row loads and stores, by what they move (see _rows_without_tma)
    "x": [(r"(ct\.load\(x, index=\(tile_m, [^)]*\), shape=\(TILE_M, TILE_K\), padding_mode=ZERO)\)", r"\1, allow_tma=False)")],
    "residual": [(r"(ct\.load\(residual, index=\(tile_m, tile_n\), shape=\(TILE_M, TILE_N\), padding_mode=ZERO)\)",
                  r"\1, allow_tma=False)")],
    "stats": [(r"(shape=\(TILE_M, STATS_BLOCK\), padding_mode=ZERO)\)", r"\1, allow_tma=False)")],
    "out": [(r"(ct\.store\(out, index=\(tile_m, tile_n\), tile=stored)\)", r"\1, allow_tma=False)"),
            (r"(tile=ct\.sum\(parts(?: \* parts)?, axis=2\))\)", r"\1, allow_tma=False)")],
}


def _rows_without_tma(kind):  # one-row matmuls move `kind` rows without TMA (run 51 tried all at once)
    def patch(render):
        def rendered(template, constants):
            source = render(template, constants)
            if template == "matmul" and constants.get("tile_m") == 1:
                for pattern, replacement in _ROW_ACCESSES[kind]:
                    source = re.sub(pattern, replacement, source)
            return source
        return rendered
    return {(cutile_export, "render"): patch}


def _tile_k(tiles, depth):  # one-row [K, N] tiles (None where a matmul keeps MMA tiles) `depth` deep
    return tiles and {**tiles, "tile_k": depth}


VARIANTS = {  # name: {compiler.tiles table, or (owner, attribute): its value under the variant, from its current one}
    "shipped": {},
    "mma-decode": {"GEMV_HINTS": lambda table: {"float32": table["float32"]}},  # 16-bit one-row: MMA tiles
    "mma-occupancy-2": {"TABLE": lambda table: {**table, (None, "decode"): {**table[None, "decode"], "occupancy": 2}}},
    "bf16-mma": {"GEMV_HINTS": lambda table: {k: v for k, v in table.items() if k != "bfloat16"}},
    "gate-up-gemv": {"GEMV_GATE_UP": lambda table: {**table, "float16": ONE_ROW_TILES, "bfloat16": ONE_ROW_TILES}},
    "attention-occupancy-1": {"DECODE_ATTENTION": lambda table: {k: v for k, v in table.items() if k != "occupancy"}},
    "attention-occupancy-3": {"DECODE_ATTENTION": lambda table: {**table, "occupancy": 3}},
    # worker warps per CTA (cuda-tile's num_worker_warps): 4 and 8 with tileiras 13.4; 1 and 2 need 13.5
    **{f"attention-warps-{n}": {"DECODE_ATTENTION": lambda table, n=n: {**table, "num_worker_warps": n}}
       for n in (1, 2, 4, 8)},
    "attention-kv-64": {"DECODE_ATTENTION": lambda table: {**table, "tile_kv": 64}},
    "attention-kv-32": {"DECODE_ATTENTION": lambda table: {**table, "tile_kv": 32}},
    "attention-kv-16": {"DECODE_ATTENTION": lambda table: {**table, "tile_kv": 16}},
    "attention-kv-128": {"DECODE_ATTENTION": lambda table: {**table, "tile_kv": 128}},
    "attention-kv-prefetch-2": {"DECODE_ATTENTION": lambda table: {**table, "kv_prefetch": 2}},  # cache tiles before the wait
    "attention-kv-prefetch-4": {"DECODE_ATTENTION": lambda table: {**table, "kv_prefetch": 4}},
    "gemv-latency-2": {"GEMV_DECODE": lambda table: {**table, "weight_latency": 2}},
    "gemv-latency-4": {"GEMV_DECODE": lambda table: {**table, "weight_latency": 4}},
    "mma-latency-2": {"DEEP_K": lambda depth: 1 << 30},  # MMA decode tiles: latency 2 at every depth
    "prefetch-3": _prefetch(3),
    "prefetch-4": _prefetch(4),
    "early-trigger": {(cutile_export, "render"): _early_trigger},  # each kernel triggers its successor before its wait
    "attention-exit-trigger": {(cutile_export, "render"): _exit_trigger},  # decode attention: only as it exits
    "out-in-prefetch-4": {"OUT_IN_PREFETCH": lambda steps: 4},  # [N, K] one-row matmuls: K steps before the wait
    "out-in-prefetch-8": {"OUT_IN_PREFETCH": lambda steps: 8},
    # every linear weight stays [in, out] (no store_out_in)
    "in-out-weights": {(store_out_in, "wants_out_in"): lambda rule: lambda op, in_out_shape, *rest: False},
    "out-in-weights": {(store_out_in, "MAX_BATCH"): lambda limit: 1 << 30},  # store_out_in at any batch
    # batch 1: linears wider than their inputs stay [in, out] even where their tiles leave SMs idle
    "wide-in-out": {"IN_OUT_GEMV_FILL": lambda fill: 0},
    # batch 1: every linear but the LM head [out, in] (qwen3's qkv too), or only those at most 3x
    # wider than their inputs (gpt2's c_attn), or with a GELU epilogue (gpt2's c_fc)
    "wide-out-in": {(store_out_in, "wants_out_in"): lambda rule: lambda op, in_out_shape, *rest: (
        in_out_shape[1] <= 8 * in_out_shape[0] or rule(op, in_out_shape))},
    "wide-out-in-3x": {(store_out_in, "wants_out_in"): lambda rule: lambda op, in_out_shape, *rest: (
        in_out_shape[1] <= 3 * in_out_shape[0] or rule(op, in_out_shape))},
    "wide-out-in-gelu": {(store_out_in, "wants_out_in"): lambda rule: lambda op, in_out_shape, *rest: (
        "gelu" in op.attrs.get("epilogue", ()) or rule(op, in_out_shape))},
    # one-row matmuls' K steps (compiler/tiles.py OUT_IN_K): 8-row [N, K] tiles 1024 deep at any
    # K and CTA count, or from DEEP_K at any CTA count; 2048 or 512 from DEEP_K; 16-row ones
    "out-in-k-1024": {"OUT_IN_K": lambda table: {**table, 8: (1024, 1024)}, "OUT_IN_DEEP_FILL": lambda fill: 0},
    "out-in-deep-k-1024": {"OUT_IN_K": lambda table: {**table, 8: (table[8][0], 1024)},
                           "OUT_IN_DEEP_FILL": lambda fill: 0},
    "out-in-deep-k-2048": {"OUT_IN_K": lambda table: {**table, 8: (table[8][0], 2048)}},
    "out-in-k-512": {"OUT_IN_K": lambda table: {**table, 8: (512, 512)}},
    "gate-up-k-128": {"OUT_IN_K": lambda table: {**table, 16: (128, 128)}},
    "gate-up-k-512": {"OUT_IN_K": lambda table: {**table, 16: (512, 512)}},
    "out-in-prefetch-3": {"OUT_IN_PREFETCH": lambda steps: 3},
    # [K, N] one-row tiles (qkv) 128 or 512 deep
    "gemv-k-128": {"_gemv_tiles": lambda rule: lambda constants, depth: _tile_k(rule(constants, depth), 128)},
    "gemv-k-512": {"_gemv_tiles": lambda rule: lambda constants, depth: _tile_k(rule(constants, depth), 512)},
    # decode attention on one CTA per head (no split cache tiles), at most 2 or 8 per head, or
    # split in caches of any length
    "kv-splits-1": {"KV_SPLITS": lambda splits: 1},
    "kv-splits-2": {"KV_SPLITS": lambda splits: 2},
    "kv-splits-8": {"KV_SPLITS": lambda splits: 8},
    "kv-split-short": {"KV_SPLIT_MIN_TILES": lambda tiles: 1},
    # split attention launches of at most 128 CTAs (batch 8 of 16 or 12 heads: no split)
    "kv-split-ctas-128": {"KV_SPLIT_CTAS": lambda ctas: 128},
    # one-row matmuls load or store one kind of row without TMA (x, residual, norm statistics, output)
    "gemv-x-no-tma": _rows_without_tma("x"),
    "gemv-residual-no-tma": _rows_without_tma("residual"),
    "gemv-stats-no-tma": _rows_without_tma("stats"),
    "gemv-out-no-tma": _rows_without_tma("out"),
    # decode attention does not rotate q and k; the rope kernel does
    "rope-kernel": {(lower._ProgramLowering, "_fused_ropes"): lambda method: lambda self: {}},
}
RESULTS_NOTE = ("runs in order; in each, 'shipped' names the rules (compiler/tiles.py) every variant is patched from; "
                "logits_error and greedy_matches compare a variant with the run's shipped plan, torch_float32_error "
                "(--torch-reference) with PyTorch's float32 logits")
_CARVEOUT = 9  # CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT


def _say(message):
    print(f"decode_variants: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def variant(name):
    """Patch compiler.tiles' tables (or the renderer, a pass, the lowering) for `name`, "a+b" composing;
    restore on exit."""
    parts = name.split("+")
    unknown = [part for part in parts if part not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant '{unknown[0]}' (have: {', '.join(VARIANTS)})")
    saved = {}
    try:
        for part in parts:
            for target, rule in VARIANTS[part].items():
                owner, attribute = target if isinstance(target, tuple) else (tiles, target)
                saved.setdefault((owner, attribute), getattr(owner, attribute))
                setattr(owner, attribute, rule(getattr(owner, attribute)))
        yield
    finally:
        for (owner, attribute), value in saved.items():
            setattr(owner, attribute, value)


def compiled_variants(keys, names, sm, new_tokens, workdir, batch=1):
    """Yield (model, variant, plan path) of `batch`-sequence plans compiled under each variant, one
    at a time; each plan (and its weights file) is deleted once the next one is asked for."""
    for key, checkpoint in built_checkpoints(keys, workdir):
        for name in names:
            _say(f"compiling {MODELS[key]['name']} under {name} for sm_{sm}")
            path = os.path.join(workdir, f"{key}-{name}.plan")
            with variant(name):
                compile_model(key, batch, new_tokens, sm, checkpoint, path)
            yield key, name, path
            for leftover in (path, *glob.glob(glob.escape(os.path.splitext(path)[0]) + ".*.weights.safetensors")):
                if os.path.exists(leftover):
                    os.remove(leftover)


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
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--export-only", type=int, metavar="SM", help="only fill the kernel cache for SM and exit")
    args = parser.parse_args()
    keys, names = args.models.split(","), args.variants.split(",")
    names = ["shipped"] + [name for name in names if name != "shipped"]  # the reference, measured first
    for name in names:
        with variant(name):
            pass  # unknown names fail here, before any compile
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
    """The decode rules of this checkout's compiler/tiles.py, which each run's variants are measured against."""
    return {"TABLE decode": tiles.TABLE[None, "decode"], "DEEP_K": tiles.DEEP_K, "WIDE_DECODE": tiles.WIDE_DECODE,
            "GEMV_DECODE": tiles.GEMV_DECODE, "GEMV_HINTS": tiles.GEMV_HINTS, "GEMV_GATE_UP": tiles.GEMV_GATE_UP,
            "DECODE_ATTENTION": tiles.DECODE_ATTENTION, "OUT_IN_ROWS": tiles.OUT_IN_ROWS,
            "OUT_IN_K": {str(rows): list(depths) for rows, depths in tiles.OUT_IN_K.items()},
            "OUT_IN_DEEP_FILL": tiles.OUT_IN_DEEP_FILL, "OUT_IN_PREFETCH": tiles.OUT_IN_PREFETCH,
            "IN_OUT_GEMV_FILL": tiles.IN_OUT_GEMV_FILL,
            "store_out_in": "batch 1: weights [out, in] where out <= in, gate+up, and where [in, out] "
                            "one-row tiles cover less than IN_OUT_GEMV_FILL of the SMs"}


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
