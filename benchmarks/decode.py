"""Decode-throughput benchmark on the GPU: cgc vs a PyTorch CUDA-graph loop and HF transformers.

Workloads: GPT-2 124M fp16 and Qwen3-0.6B bf16 (default), Llama-3.2-1B, the Qwen2-7B decoder and
a Llama-3.1-8B-shaped model (bf16), batch 1 and 8, a 16-token random prompt, then a fixed number of
greedy new tokens (EOS ignored). All peers share one set of random weights (a HF checkpoint written
first, on the GPU for the large models, which cgc compiles; one plan per model and batch). The
floor is the weight-read bound: batch / (weight bytes per step / copy bandwidth measured here).
With --quants, cgc also runs plans compiled with --quant (each against the bytes its own decode
step reads), and reports how many of their greedy tokens differ from the unquantized plan's.
Writes benchmarks/results/decode-<gpu>[-<tag>].json and .png.

    python benchmarks/decode.py [--models gpt2,qwen3] [--batches 1,8] [--new-tokens 128] [--skip-hf] [--tag T]
                                [--quants none,int8,int4,fp8]
    python benchmarks/decode.py --export-only 90   # fill the kernel cache (CGC_CACHE_DIR) where tileiras works

The cache keys depend on the plan's shapes, so export with the same --models, --batches and
--new-tokens (it sets the plan's max sequence) as the run. The large models export from one-layer
plans of their presets (every layer runs the same kernels), so no 15 GB checkpoint is written.
"""

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compiler.compile import CompileOptions, compile_plan, stderr_log  # noqa: E402
from compiler.tiles import SHIPPED  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from runtime.step_bytes import decode_weight_bytes  # noqa: E402

LLAMA3_ROPE = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=8192)
MODELS = {
    "gpt2": {"name": "gpt2-124M", "graph": "gpt2", "preset": "gpt2", "dtype": "float16",
             "config": "GPT2Config", "class": "GPT2LMHeadModel", "kwargs": dict(vocab_size=50257)},
    "qwen3": {"name": "qwen3-0.6B", "graph": "qwen3", "preset": "qwen3-0.6b", "dtype": "bfloat16",
              "config": "Qwen3Config", "class": "Qwen3ForCausalLM",
              "kwargs": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                             num_attention_heads=16, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                             rope_theta=1e6, tie_word_embeddings=True, max_position_embeddings=40960)},
    "llama-1b": {"name": "llama-3.2-1B", "graph": "llama", "preset": "llama-3.2-1b", "dtype": "bfloat16",
                 "config": "LlamaConfig", "class": "LlamaForCausalLM", "large": True,
                 "kwargs": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                                rope_theta=500000.0, rope_scaling=LLAMA3_ROPE, tie_word_embeddings=True,
                                max_position_embeddings=131072)},
    "qwen2-7b": {"name": "qwen2-7B-decoder", "graph": "qwen2", "preset": "qwen2-7b-decoder", "dtype": "bfloat16",
                 "config": "Qwen2Config", "class": "Qwen2ForCausalLM", "large": True,
                 "kwargs": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1e6,
                                tie_word_embeddings=False, max_position_embeddings=32768)},
    "llama-8b": {"name": "llama-3.1-8B-shaped", "graph": "llama", "preset": "llama-3.1-8b", "dtype": "bfloat16",
                 "config": "LlamaConfig", "class": "LlamaForCausalLM", "large": True,
                 "kwargs": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5,
                                rope_theta=500000.0, rope_scaling=dict(LLAMA3_ROPE, factor=8.0),
                                tie_word_embeddings=False, max_position_embeddings=131072)},
}
PROMPT = 16
WEIGHT_STD = 0.05  # as tests/hf_reference.py: varied greedy tokens, logits well inside fp16/bf16 range
CHECK_TOKENS = 8   # leading greedy tokens compared between peers
PEERS = ("cgc", "pytorch cuda-graph", "HF transformers eager")


_STARTED = time.perf_counter()


def _say(message):
    print(f"decode: [{time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def max_seq(new_tokens):
    """The plans' max sequence: a multiple of 256 holding the prompt and the new tokens."""
    return 256 * -(-(PROMPT + new_tokens) // 256)


def build_checkpoint(key, directory):
    """The HF model of `key` with seeded random weights in its dtype (CPU), saved to `directory`."""
    import torch
    import transformers
    model = MODELS[key]
    config = getattr(transformers, model["config"])(**model["kwargs"])
    torch.manual_seed(0)
    device = "cuda" if model.get("large") and torch.cuda.is_available() else "cpu"  # CPU init of 7B takes minutes
    with torch.device(device):
        hf = getattr(transformers, model["class"])(config).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "norm" not in name and ".ln_" not in name:
                param.normal_(0.0, WEIGHT_STD)
    hf = cast_like_loaded(hf, getattr(torch, model["dtype"]))
    hf.save_pretrained(directory, safe_serialization=True)
    return hf


def cast_like_loaded(hf, dtype):
    """`hf` cast to `dtype` as `from_pretrained(..., dtype=dtype)` would hold it: `Module.to` also
    rounds the rotary `inv_freq` buffers, whose rope angles then drift by ~position * 2^-9 (a bf16
    peer's logits at 256 tokens were 0.15 off its float32 self); they stay float32."""
    kept = {name: buffer.clone() for name, buffer in hf.named_buffers() if name.endswith("inv_freq")}
    hf = hf.to(dtype)
    for name, buffer in kept.items():
        owner, _, attribute = name.rpartition(".")
        hf.get_submodule(owner)._buffers[attribute] = buffer
    return hf


def compile_model(key, batch, new_tokens, sm, checkpoint, plan_path, tile_rules=SHIPPED, overrides=None, quant=None):
    """Compile the cgc plan of (model, batch) from `checkpoint` under `tile_rules` (quantized with
    `quant`, default group size); returns seconds taken."""
    model = MODELS[key]
    options = CompileOptions(preset=model["preset"], checkpoint=checkpoint, overrides=overrides or {},
                             dtype=model["dtype"], sms=(sm,) if sm else (),
                             max_batch=batch, max_seq=max_seq(new_tokens), prefill_buckets=(PROMPT,),
                             cache_dir=os.environ.get("CGC_CACHE_DIR"), tile_rules=tile_rules, quant=quant)
    started = time.perf_counter()
    compile_plan(model["graph"], plan_path, options, log=stderr_log)
    return time.perf_counter() - started


def built_checkpoints(keys, workdir):
    """Yield (model key, checkpoint directory) after writing each model's random checkpoint under `workdir`."""
    for key in keys:
        checkpoint = os.path.join(workdir, key)
        _say(f"building {MODELS[key]['name']} checkpoint")
        build_checkpoint(key, checkpoint)
        yield key, checkpoint


def export_only(sm, keys, batches, new_tokens, workdir, quants=(None,)):
    """Fill the kernel cache with every cubin the benchmark needs (on a machine with tileiras)."""
    for key in [key for key in keys if MODELS[key].get("large")]:
        for batch in batches:
            for quant in quants:
                _say(f"compiling one layer of {MODELS[key]['name']} batch {batch} {quant or ''} for sm_{sm}")
                compile_model(key, batch, new_tokens, sm, None, os.path.join(workdir, f"{key}-{batch}.plan"),
                              overrides={"num_hidden_layers": 1}, quant=quant)
                remove_plan(os.path.join(workdir, f"{key}-{batch}.plan"))
    for key, checkpoint in built_checkpoints([key for key in keys if not MODELS[key].get("large")], workdir):
        for batch in batches:
            for quant in quants:
                _say(f"compiling {MODELS[key]['name']} batch {batch} {quant or ''} for sm_{sm}")
                compile_model(key, batch, new_tokens, sm, checkpoint, os.path.join(workdir, f"{key}-{batch}.plan"),
                              quant=quant)


def remove_plan(path):
    """Delete a plan and its content-named external weights file, if any."""
    for leftover in (path, *glob.glob(glob.escape(os.path.splitext(path)[0]) + ".*.weights.safetensors")):
        if os.path.exists(leftover):
            os.remove(leftover)


def copy_bandwidth(nbytes=1 << 30, iters=20):
    """Device-to-device copy bandwidth in bytes/s (read + write) of a 1 GiB buffer."""
    import torch
    source = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        target.copy_(source)
    end.record()
    end.synchronize()
    return 2 * nbytes * iters / (start.elapsed_time(end) / 1e3)


def weight_bytes(hf):
    """Parameter bytes one decode step reads: all of them once, except tables only gathered from
    (position embeddings, an untied input embedding); a tied embedding counts once, as the LM head."""
    import torch
    lm_head = hf.get_output_embeddings().weight
    gathered = {id(m.weight) for m in hf.modules() if isinstance(m, torch.nn.Embedding) and m.weight is not lm_head}
    return sum(p.numel() * p.element_size() for p in hf.parameters() if id(p) not in gathered)


def measure_cgc(plan_path, prompts, new_tokens):
    """(decode tokens/s, new tokens [B, new_tokens], seconds to open the plan) of cgc's generate,
    after one warm-up (graph capture)."""
    from runtime.generate import generate
    from runtime.session import open_plan
    started = time.perf_counter()
    executor = open_plan(plan_path, device="gpu")
    load_s = time.perf_counter() - started
    try:
        generate(executor, prompts, new_tokens)
        result = generate(executor, prompts, new_tokens)
    finally:
        executor.close()
    return len(prompts) * (new_tokens - 1) / result.decode_seconds, np.array(result.tokens), load_s


def measure_torch(key, hf, prompt, new_tokens):
    """(decode tokens/s, new tokens) of the PyTorch static-cache decoder, one CUDA graph per step."""
    from benchmarks.torch_decode import DECODERS, greedy_decode
    rotary = getattr(getattr(hf, "model", None), "rotary_emb", None)
    extra = {"inv_freq": rotary.inv_freq} if rotary is not None else {}
    decoder = DECODERS[MODELS[key]["graph"]](hf.state_dict(), hf.config, prompt.shape[0], max_seq(new_tokens), **extra)
    tokens, seconds = greedy_decode(decoder, prompt, new_tokens)
    return prompt.shape[0] * (new_tokens - 1) / seconds, tokens.numpy()


def measure_hf(hf, prompt, new_tokens):
    """(decode tokens/s, new tokens) of HF generate: the time of `new_tokens` minus the time of one
    new token (prefill + first token), over new_tokens - 1 steps."""
    import torch

    def timed(count):
        torch.cuda.synchronize()
        started = time.perf_counter()
        output = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=count,
                             min_new_tokens=count, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - started, output[:, prompt.shape[1]:].cpu().numpy()

    timed(2)  # warm-up
    first = min(timed(1)[0] for _ in range(3))
    total, tokens = timed(new_tokens)
    return prompt.shape[0] * (new_tokens - 1) / (total - first), tokens


def _first_difference(tokens, reference):
    """Per sequence, the first step whose greedy token differs (None where none does)."""
    return [next((int(i) for i in np.nonzero(row != ref)[0][:1]), None) for row, ref in zip(tokens, reference)]


def _mismatches(tokens, reference):
    return int((tokens[:, :CHECK_TOKENS] != reference[:, :CHECK_TOKENS]).sum())


def run_model(key, args, sm, bandwidth, workdir):
    """Measure every peer on model `key` at each batch; returns one result row per batch."""
    import torch
    model = MODELS[key]
    checkpoint = os.path.join(workdir, key)
    _say(f"building {model['name']} checkpoint")
    hf = build_checkpoint(key, checkpoint).to("cuda")
    step_bytes = weight_bytes(hf)
    rows = []
    for batch in args.batches:
        plan_path = os.path.join(workdir, f"{key}-{batch}.plan")
        _say(f"compiling {model['name']} batch {batch}")
        compile_s = compile_model(key, batch, args.new_tokens, sm, checkpoint, plan_path)
        prompts = np.random.default_rng(batch).integers(0, hf.config.vocab_size, size=(batch, PROMPT))
        prompt = torch.tensor(prompts, device="cuda")
        rates, tokens = {}, {}
        _say(f"measuring cgc, {model['name']} batch {batch}")
        rates["cgc"], tokens["cgc"], load_s = measure_cgc(plan_path, prompts.tolist(), args.new_tokens)
        quantized = {}
        for quant in (q for q in args.quants if q):
            quant_path = os.path.join(workdir, f"{key}-{batch}-{quant}.plan")
            _say(f"compiling and measuring cgc {quant}, {model['name']} batch {batch}")
            quant_compile_s = compile_model(key, batch, args.new_tokens, sm, checkpoint, quant_path, quant=quant)
            quant_bytes = decode_weight_bytes(load_plan(quant_path))
            rate, quant_tokens, _ = measure_cgc(quant_path, prompts.tolist(), args.new_tokens)
            rates[f"cgc {quant}"] = rate
            quantized[quant] = {"weight_bytes_per_step": quant_bytes, "floor_tokens_per_s": batch * bandwidth / quant_bytes,
                                "floor_fraction": rate * quant_bytes / (batch * bandwidth), "compile_s": quant_compile_s,
                                "greedy_tokens_differing_from_unquantized": int((quant_tokens != tokens["cgc"]).sum()),
                                "first_differing_step": _first_difference(quant_tokens, tokens["cgc"])}
            remove_plan(quant_path)
        _say(f"measuring pytorch cuda-graph, {model['name']} batch {batch}")
        with torch.no_grad():
            rates[PEERS[1]], tokens[PEERS[1]] = measure_torch(key, hf, prompt, args.new_tokens)
            if not args.skip_hf:
                _say(f"measuring HF transformers, {model['name']} batch {batch}")
                rates[PEERS[2]], tokens[PEERS[2]] = measure_hf(hf, prompt, args.hf_new_tokens)
        remove_plan(plan_path)
        torch.cuda.empty_cache()
        check = {"cgc vs pytorch": _mismatches(tokens["cgc"], tokens[PEERS[1]])}
        if not args.skip_hf:
            check["pytorch vs HF"] = _mismatches(tokens[PEERS[1]], tokens[PEERS[2]])
        rows.append({"model": model["name"], "dtype": model["dtype"], "batch": batch, "prompt_tokens": PROMPT,
                     "new_tokens": args.new_tokens, "hf_new_tokens": None if args.skip_hf else args.hf_new_tokens,
                     "tokens_per_s": rates, "cgc_speedup": {peer: rates["cgc"] / rate for peer, rate in rates.items()},
                     "floor_tokens_per_s": batch * bandwidth / step_bytes,
                     "floor_fraction": {peer: rate * step_bytes / (batch * bandwidth) for peer, rate in rates.items()},
                     "weight_bytes_per_step": step_bytes, "compile_s": compile_s, "load_s": load_s,
                     f"greedy_mismatches_first_{CHECK_TOKENS}_tokens": check, "quantized": quantized})
    del hf
    torch.cuda.empty_cache()
    return rows


def model_benchmark_parser(doc, default_models):
    """The arguments every model benchmark takes: --models, --out, --export-only, --workdir."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", default=default_models, help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--export-only", type=int, metavar="SM", help="only fill the kernel cache for SM and exit")
    parser.add_argument("--workdir", help="where checkpoints and plans are written (default: a temp dir; "
                                          "/dev/shm suits the large models)")
    return parser


def main():
    parser = model_benchmark_parser(__doc__, "gpt2,qwen3")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--hf-new-tokens", type=int, default=32, help="new tokens for the (slow) HF peer")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--tag", help="suffix of the results file names (decode-<gpu>-<tag>.json)")
    parser.add_argument("--quants", default="none", help="cgc plans to run: none (16-bit) and/or int8, int4, fp8")
    args = parser.parse_args()
    args.quants = [None if q == "none" else q for q in args.quants.split(",")]
    args.models = args.models.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or min(args.new_tokens, args.hf_new_tokens) < 2:
        parser.error(f"unknown model {unknown[0]}" if unknown else "--new-tokens and --hf-new-tokens must be >= 2")
    if args.export_only:
        with tempfile.TemporaryDirectory() as workdir:
            export_only(args.export_only, args.models, args.batches, args.new_tokens, workdir, args.quants)
        return
    import cupy
    import torch
    sm = int(cupy.cuda.Device().compute_capability)
    device = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    _say(f"{device}: copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    rows = []
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "decode-" + device.lower().replace(" ", "-") + (f"-{args.tag}" if args.tag else ""))
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for key in args.models:
            rows.extend(run_model(key, args, sm, bandwidth, workdir))
            shutil.rmtree(os.path.join(workdir, key), ignore_errors=True)
            _write_results(stem + ".json", device, sm, bandwidth, rows)  # after each model: a cut-off run keeps them
    _print_table(rows, device, bandwidth)
    _chart(rows, device, stem + ".png")


def _write_results(path, device, sm, bandwidth, rows):
    with open(path, "w") as handle:
        json.dump({"device": device, "sm": sm, "copy_bandwidth_bytes_per_s": bandwidth,
                   "tokens_per_s": "batch * (new tokens - 1) / decode time; HF's decode time is the time of "
                                   "hf_new_tokens new tokens minus the time of 1 (prefill + first token)",
                   "results": rows}, handle, indent=2)


def _print_table(rows, device, bandwidth):
    print(f"device: {device}, copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    print(f"{'model':<12} {'batch':>5} {'peer':<22} {'tok/s':>9} {'cgc speedup':>12} {'floor frac':>10}")
    for row in rows:
        rates = row["tokens_per_s"]
        for peer, rate in rates.items():
            quant = row.get("quantized", {}).get(peer.removeprefix("cgc "))
            floor = quant["floor_tokens_per_s"] if quant else row["floor_tokens_per_s"]
            print(f"{row['model']:<12} {row['batch']:>5} {peer:<22} {rate:>9.0f} {rates['cgc'] / rate:>11.2f}x "
                  f"{rate / floor:>10.3f}")
        mismatches = row[f"greedy_mismatches_first_{CHECK_TOKENS}_tokens"]
        checks = ", ".join(f"{name} {count}" for name, count in mismatches.items())
        print(f"{row['model']:<12} {row['batch']:>5} floor {row['floor_tokens_per_s']:.0f} tok/s; greedy mismatches in "
              f"the first {CHECK_TOKENS} tokens: {checks}; compile {row['compile_s']:.1f} s")


def _chart(rows, device, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 4))
    for axis, row in zip(np.atleast_1d(axes), rows):
        peers = list(row["tokens_per_s"])
        axis.bar(peers, [row["tokens_per_s"][p] for p in peers],
                 color=["tab:green"] + ["tab:gray"] * (len(peers) - 1))
        axis.axhline(row["floor_tokens_per_s"], color="tab:red", linestyle="--", label="weight-read floor")
        axis.set_title(f"{row['model']} {row['dtype']}, batch {row['batch']}")
        axis.set_ylabel("decode tokens/s (higher is better)")
        axis.tick_params(axis="x", rotation=20)
        axis.legend()
    figure.suptitle(f"Greedy decode on {device}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
