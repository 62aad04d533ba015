"""Decode-throughput benchmark on the GPU: cgc vs a PyTorch CUDA-graph loop and HF transformers.

Workloads (issue 4): GPT-2 124M fp16 and Qwen3-0.6B bf16, batch 1 and 8, a 16-token random
prompt, then a fixed number of greedy new tokens (EOS ignored). All peers share one set of random
weights (a HF checkpoint written first, which cgc compiles; one plan per model and batch). The
floor is the weight-read bound: batch / (weight bytes per step / copy bandwidth measured here).
Writes benchmarks/results/decode-<gpu>.json and .png.

    python benchmarks/decode.py [--models gpt2,qwen3] [--batches 1,8] [--new-tokens 128] [--skip-hf]
    python benchmarks/decode.py --export-only 90   # fill the kernel cache (CGC_CACHE_DIR) where tileiras works

The cache keys depend on the plan's shapes, so export with the same --models, --batches and
--new-tokens (it sets the plan's max sequence) as the run.
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compiler.compile import CompileOptions, compile_plan, stderr_log  # noqa: E402

MODELS = {
    "gpt2": {"name": "gpt2-124M", "graph": "gpt2", "preset": "gpt2", "dtype": "float16",
             "config": "GPT2Config", "class": "GPT2LMHeadModel", "kwargs": dict(vocab_size=50257)},
    "qwen3": {"name": "qwen3-0.6B", "graph": "qwen3", "preset": "qwen3-0.6b", "dtype": "bfloat16",
              "config": "Qwen3Config", "class": "Qwen3ForCausalLM",
              "kwargs": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                             num_attention_heads=16, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                             rope_theta=1e6, tie_word_embeddings=True, max_position_embeddings=40960)},
}
PROMPT = 16
WEIGHT_STD = 0.05  # as tests/hf_reference.py: varied greedy tokens, logits well inside fp16/bf16 range
CHECK_TOKENS = 8   # leading greedy tokens compared between peers
PEERS = ("cgc", "pytorch cuda-graph", "HF transformers eager")


def _say(message):
    print(f"decode: {message}", file=sys.stderr, flush=True)


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
    hf = getattr(transformers, model["class"])(config).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "norm" not in name and ".ln_" not in name:
                param.normal_(0.0, WEIGHT_STD)
    hf = hf.to(getattr(torch, model["dtype"]))
    hf.save_pretrained(directory, safe_serialization=True)
    return hf


def compile_model(key, batch, new_tokens, sm, checkpoint, plan_path):
    """Compile the cgc plan of (model, batch) from `checkpoint`; returns seconds taken."""
    model = MODELS[key]
    options = CompileOptions(preset=model["preset"], checkpoint=checkpoint, dtype=model["dtype"], sms=(sm,),
                             max_batch=batch, max_seq=max_seq(new_tokens), prefill_buckets=(PROMPT,),
                             cache_dir=os.environ.get("CGC_CACHE_DIR"))
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


def export_only(sm, keys, batches, new_tokens, workdir):
    """Fill the kernel cache with every cubin the benchmark needs (on a machine with tileiras)."""
    for key, checkpoint in built_checkpoints(keys, workdir):
        for batch in batches:
            _say(f"compiling {MODELS[key]['name']} batch {batch} for sm_{sm}")
            compile_model(key, batch, new_tokens, sm, checkpoint, os.path.join(workdir, f"{key}-{batch}.plan"))


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
    """(decode tokens/s, new tokens [B, new_tokens]) of cgc's generate, after one warm-up (graph capture)."""
    from runtime.generate import generate
    from runtime.session import open_plan
    executor = open_plan(plan_path, device="gpu")
    try:
        generate(executor, prompts, new_tokens)
        result = generate(executor, prompts, new_tokens)
    finally:
        executor.close()
    return len(prompts) * (new_tokens - 1) / result.decode_seconds, np.array(result.tokens)


def measure_torch(key, hf, prompt, new_tokens):
    """(decode tokens/s, new tokens) of the PyTorch static-cache decoder, one CUDA graph per step."""
    from benchmarks.torch_decode import DECODERS, greedy_decode
    decoder = DECODERS[key](hf.state_dict(), hf.config, prompt.shape[0], max_seq(new_tokens))
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
        rates["cgc"], tokens["cgc"] = measure_cgc(plan_path, prompts.tolist(), args.new_tokens)
        _say(f"measuring pytorch cuda-graph, {model['name']} batch {batch}")
        with torch.no_grad():
            rates[PEERS[1]], tokens[PEERS[1]] = measure_torch(key, hf, prompt, args.new_tokens)
            if not args.skip_hf:
                _say(f"measuring HF transformers, {model['name']} batch {batch}")
                rates[PEERS[2]], tokens[PEERS[2]] = measure_hf(hf, prompt, args.hf_new_tokens)
        for path in (plan_path, *glob.glob(glob.escape(os.path.splitext(plan_path)[0]) + ".*.weights.safetensors")):
            if os.path.exists(path):
                os.remove(path)
        torch.cuda.empty_cache()
        check = {"cgc vs pytorch": _mismatches(tokens["cgc"], tokens[PEERS[1]])}
        if not args.skip_hf:
            check["pytorch vs HF"] = _mismatches(tokens[PEERS[1]], tokens[PEERS[2]])
        rows.append({"model": model["name"], "dtype": model["dtype"], "batch": batch, "prompt_tokens": PROMPT,
                     "new_tokens": args.new_tokens, "hf_new_tokens": None if args.skip_hf else args.hf_new_tokens,
                     "tokens_per_s": rates, "cgc_speedup": {peer: rates["cgc"] / rate for peer, rate in rates.items()},
                     "floor_tokens_per_s": batch * bandwidth / step_bytes,
                     "floor_fraction": {peer: rate * step_bytes / (batch * bandwidth) for peer, rate in rates.items()},
                     "weight_bytes_per_step": step_bytes, "compile_s": compile_s,
                     f"greedy_mismatches_first_{CHECK_TOKENS}_tokens": check})
    del hf
    torch.cuda.empty_cache()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,qwen3", help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--hf-new-tokens", type=int, default=32, help="new tokens for the (slow) HF peer")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--export-only", type=int, metavar="SM", help="only fill the kernel cache for SM and exit")
    args = parser.parse_args()
    args.models = args.models.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or min(args.new_tokens, args.hf_new_tokens) < 2:
        parser.error(f"unknown model {unknown[0]}" if unknown else "--new-tokens and --hf-new-tokens must be >= 2")
    if args.export_only:
        with tempfile.TemporaryDirectory() as workdir:
            export_only(args.export_only, args.models, args.batches, args.new_tokens, workdir)
        return
    import cupy
    import torch
    sm = int(cupy.cuda.Device().compute_capability)
    device = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    _say(f"{device}: copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for key in args.models:
            rows.extend(run_model(key, args, sm, bandwidth, workdir))
    _print_table(rows, device, bandwidth)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "decode-" + device.lower().replace(" ", "-"))
    with open(stem + ".json", "w") as handle:
        json.dump({"device": device, "sm": sm, "copy_bandwidth_bytes_per_s": bandwidth,
                   "tokens_per_s": "batch * (new tokens - 1) / decode time; HF's decode time is the time of "
                                   "hf_new_tokens new tokens minus the time of 1 (prefill + first token)",
                   "results": rows}, handle, indent=2)
    _chart(rows, device, stem + ".png")


def _print_table(rows, device, bandwidth):
    print(f"device: {device}, copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    print(f"{'model':<12} {'batch':>5} {'peer':<22} {'tok/s':>9} {'cgc speedup':>12} {'floor frac':>10}")
    for row in rows:
        rates = row["tokens_per_s"]
        for peer, rate in rates.items():
            print(f"{row['model']:<12} {row['batch']:>5} {peer:<22} {rate:>9.0f} {rates['cgc'] / rate:>11.2f}x "
                  f"{rate / row['floor_tokens_per_s']:>10.3f}")
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
