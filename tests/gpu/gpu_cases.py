"""The plans the GPU tests compile, in one place, so their kernels can be exported ahead of time.

The GPU machine may lack a working tileiras: `python -m tests.gpu.gpu_cases --sm 90` (on a CPU
machine with cuda-tile) fills the kernel cache (CGC_CACHE_DIR, default artifacts/cache) with
every cubin the GPU tests need; carried along, it lets them compile there from cache alone.
"""

import argparse
import os
import tempfile

from compiler.compile import CompileOptions, compile_plan

CACHE_DIR = os.environ.get("CGC_CACHE_DIR", os.path.join("artifacts", "cache"))

# HF parity plans (small random HF models, tests/hf_reference.py), float32 (exact float32 matmuls);
# llama also as --dtype tf32, with 3 sequences and with --prompt-logits (test_plan_gpu.py)
PARITY_FAMILIES = ["gpt2", "llama", "qwen2", "qwen3"]
EXTRA_PARITY = [("llama", 3, "float32", False), ("llama", 2, "tf32", False), ("llama", 2, "float32", True)]
# quantized parity plans (--quant, int4 groups of QUANT_GROUP): every family and mode, one row
# (max_batch 1) and MMA decode (2)
QUANT_MODES = ("int8", "int4", "fp8")
QUANT_PARITY = [(family, mode, batch) for family in PARITY_FAMILIES for mode in QUANT_MODES for batch in (1, 2)]

# Kernel sweep: (name, graph, preset, overrides, dtype, prefill bucket[, plan limits]); plans are
# for 2 sequences of 64 positions unless the limits say otherwise. Plans long enough to split
# decode attention over several CTAs per head (tiles.decode_kv_splits): qwen3's 128-wide heads in
# 64-key tiles, 9 tiles over 8 splits, 2 sequences; gpt2's 16-wide heads in 128-key tiles, 8 over
# 8, one sequence (one-row matmuls).
KERNEL_CASES = [
    ("gpt2-nano-fp32", "gpt2", "nano", {"n_layer": 1}, "float32", 37),
    ("gpt2-nano-fp16", "gpt2", "nano", {"n_layer": 1}, "float16", 16),
    ("llama-tiny-bf16", "llama", "tiny", {"num_hidden_layers": 1}, "bfloat16", 37),
    ("qwen2-tiny-fp16", "qwen2", "tiny", {"num_hidden_layers": 1}, "float16", 16),
    ("qwen3-tiny-fp32", "qwen3", "tiny", {"num_hidden_layers": 1, "head_dim": 64}, "float32", 16),
    ("qwen3-tiny-bf16-long", "qwen3", "tiny", {"num_hidden_layers": 1, "head_dim": 128}, "bfloat16", 16,
     {"max_batch": 2, "max_seq": 576}),
    ("gpt2-nano-fp16-one-row", "gpt2", "nano", {"n_layer": 1}, "float16", 16, {"max_batch": 1, "max_seq": 1024}),
    ("llama-tiny-bf16-int4", "llama", "tiny", {"num_hidden_layers": 1}, "bfloat16", 16,
     {"max_batch": 1, "quant": "int4", "group_size": 32}),
    ("qwen3-tiny-fp16-int8", "qwen3", "tiny", {"num_hidden_layers": 1}, "float16", 37,
     {"max_batch": 2, "quant": "int8"}),
    ("qwen2-tiny-bf16-fp8", "qwen2", "tiny", {"num_hidden_layers": 1}, "bfloat16", 16,
     {"max_batch": 1, "quant": "fp8"}),
    # prefill-shaped int4 launches multiply by a dequantized copy ([N, K] here, [K, N] in the
    # batch-2 parity plans of test_quant_gpu); at Llama-3.2-1B widths, groups of 128, the one-row
    # q/k/v and gate+up sum two groups a K step into group accumulators
    ("llama-tiny-bf16-int4-prefill", "llama", "tiny", {"num_hidden_layers": 1}, "bfloat16", 37,
     {"max_batch": 1, "quant": "int4", "group_size": 32}),
    ("llama-1b-widths-bf16-int4", "llama", "llama-3.2-1b", {"num_hidden_layers": 1}, "bfloat16", 37,
     {"max_batch": 1, "quant": "int4", "group_size": 128}),
    # the Qwen2-7B decoder's widths at batch 8: 448 norm-statistics groups a decode row (512-wide
    # blocks), 18944-wide gate+up on 128x64 prefill and 16x32 decode tiles
    ("qwen2-7b-widths-bf16-b8", "qwen2", "qwen2-7b-decoder", {"num_hidden_layers": 1}, "bfloat16", 16,
     {"max_batch": 8}),
]


def parity_options(checkpoint, sm, max_batch=2, dtype="float32", quant=None, prompt_logits=False):
    """Options of a parity plan compiled from an HF checkpoint directory (max_batch 1: the one-row
    decode path, with [out, in] weights; see compiler/passes/store_out_in.py)."""
    from tests.hf_reference import QUANT_GROUP
    return CompileOptions(checkpoint=checkpoint, max_batch=max_batch, max_seq=48, prefill_buckets=(8, 16),
                          sms=(sm,), cache_dir=CACHE_DIR, dtype=dtype, quant=quant, group_size=QUANT_GROUP,
                          prompt_logits=prompt_logits)


def kernel_case_options(case, sm):
    """Options of a kernel-sweep plan (random weights)."""
    _, _, preset, overrides, dtype, bucket, *limits = case
    limits = {"max_batch": 2, "max_seq": 64, **(limits[0] if limits else {})}
    return CompileOptions(preset=preset, overrides=dict(overrides), dtype=dtype, prefill_buckets=(bucket,),
                          sms=(sm,), cache_dir=CACHE_DIR, **limits)


def warm_cache(sm):
    """Compile every GPU-test plan for `sm` once, leaving its cubins in the cache."""
    from tests.hf_reference import QUANT_SIZES, build_model, save_checkpoint
    with tempfile.TemporaryDirectory() as workdir:
        for index, family in enumerate(PARITY_FAMILIES):
            checkpoint = os.path.join(workdir, family)
            save_checkpoint(build_model(family, seed=index), checkpoint)
            for max_batch in (1, 2):
                compile_plan(family, os.path.join(workdir, f"{family}-{max_batch}.plan"),
                             parity_options(checkpoint, sm, max_batch))
        for family, max_batch, dtype, prompt_logits in EXTRA_PARITY:
            checkpoint = os.path.join(workdir, family)
            compile_plan(family, os.path.join(workdir, f"{family}-{max_batch}-{dtype}.plan"),
                         parity_options(checkpoint, sm, max_batch, dtype, prompt_logits=prompt_logits))
        for case in KERNEL_CASES:
            compile_plan(case[1], os.path.join(workdir, f"{case[0]}.plan"), kernel_case_options(case, sm))
        for family in PARITY_FAMILIES:
            checkpoint = os.path.join(workdir, f"{family}-quant")
            save_checkpoint(build_model(family, seed=PARITY_FAMILIES.index(family), **QUANT_SIZES.get(family, {})),
                            checkpoint)
            for _, mode, max_batch in (case for case in QUANT_PARITY if case[0] == family):
                compile_plan(family, os.path.join(workdir, f"{family}-{mode}-{max_batch}.plan"),
                             parity_options(checkpoint, sm, max_batch, quant=mode))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="export the GPU tests' kernels into the cache")
    parser.add_argument("--sm", type=int, default=90)
    warm_cache(parser.parse_args().sm)
