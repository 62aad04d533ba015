"""Export every standalone kernel case of tests/gpu/test_kernels_gpu.py into a folder, for one SM.

Run on any machine with cuda-tile (no GPU needed), carry the folder to the GPU machine:

    python -m tests.gpu.export_test_cubins --sm 90 --out artifacts/gpu_cubins
    CGC_GPU_CUBINS=artifacts/gpu_cubins python -m pytest -m gpu tests/gpu/test_kernels_gpu.py

The folder holds one `<case>.cubin` per case and `manifest.json`: for each case its template,
full constants (tiles included), entry symbol, block size (EIATTR_REQNTID), grid, tolerance and
operands. An operand is a strided view into a buffer of its own: `shape`, `strides` (elements),
`offset` (elements from the buffer start, the column offset of a slice) and `buffer` (elements
to allocate); int32 operands carry their `values`. Cases name their operands by role and
compiler.kernels.ordered lays them out, as lowering does. `role` is `in`, `out` (poisoned with NaN
before the launch) or `inout` (the KV cache: random history, updated in place).
"""

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from compiler.specialize import alignment_facts
from compiler.kernels import choose_tiles, launch_grid, ordered
from runtime.plan_layout import DECODE_STATS_GROUP, STATS_GROUP, argmax_width, stats_width

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int8": 1, "uint8": 1, "float8_e4m3": 1}

# rel. error bounds (max |gpu - ref| / max |ref|); fp32 matmul and prefill attention ran in TF32
# before issue 20 (float32 now unless `mma: tf32`),
# GELU/SiLU may use approximate tanh/exp
EXACT, TRANSCENDENTAL, TENSOR_CORE, HALF = 1e-4, 1e-3, 5e-3, 2e-2


def operand(name, dtype, shape, role="in", parent_cols=None, column=0, values=None, mean=None, std=None):
    """A view of `shape` into its own buffer whose rows are `parent_cols` wide, starting at `column`
    (random inputs drawn from N(mean, std) when given)."""
    shape = list(shape)
    width = parent_cols or shape[-1]
    strides = [1] * len(shape)
    if len(shape) > 1:
        strides[-2] = width
        for axis in range(len(shape) - 3, -1, -1):
            strides[axis] = strides[axis + 1] * shape[axis + 1]
    buffer = column + sum((n - 1) * s for n, s in zip(shape, strides)) + 1 if all(shape) else column + 1
    entry = {"name": name, "dtype": dtype, "shape": shape, "strides": strides, "offset": column,
             "buffer": buffer, "role": role}
    if values is not None:
        entry["values"] = [int(v) if dtype == "int32" else float(v) for v in values]
    if mean is not None:
        entry["mean"], entry["std"] = mean, std
    return entry


def _ints(name, values):
    return operand(name, "int32", [len(values)], values=values)


def _tolerance(dtype, fp32_bound):
    return fp32_bound if dtype == "float32" else HALF


def _embed_cases():
    cases = []
    for dtype, vocab, width, positions, batch, seq, *stats in (("float32", 50257, 48, True, 1, 37),
                                                              ("float16", 300, 192, False, 2, 19),
                                                              ("bfloat16", 1000, 3584, True, 2, 19),
                                                              ("float16", 300, 80, True, 2, 5, "layernorm"),
                                                              ("bfloat16", 1000, 3584, False, 1, 3, "rmsnorm")):
        tokens = [(i * 7919 + 13) % vocab for i in range(batch * seq)]
        tokens[-1] = vocab - 1
        ops = [operand("tokens", "int32", [batch, seq], values=tokens), _ints("start_pos", [3, 0][:batch]),
               operand("table", dtype, [vocab, width])]
        if positions:
            ops.append(operand("pos_table", dtype, [64, width]))
        ops.append(operand("out", dtype, [batch * seq, width], "out", parent_cols=width + 16))
        constants = {"dtype": dtype, "positions": positions}
        if stats:
            constants.update(row_stats=stats[0], stats_group=STATS_GROUP)
            ops.append(operand("stats", "float32", [batch * seq, stats_width(width, stats[0])], "out"))
        cases.append((f"embed-{dtype}-v{vocab}-d{width}" + (f"-stats-{stats[0]}" if stats else ""), "embed", constants, ops,
                      _tolerance(dtype, EXACT)))
    return cases


def _norm_cases():
    cases = []
    for dtype, width in (("float32", 48), ("float16", 192), ("bfloat16", 3584), ("float16", 48)):
        ops = [operand("x", dtype, [37, width], parent_cols=width * 3), operand("weight", dtype, [width]),
               operand("bias", dtype, [width]), operand("out", dtype, [37, width], "out")]
        cases.append((f"layernorm-{dtype}-d{width}", "layernorm", {"dtype": dtype, "eps": 1e-5}, ops,
                      _tolerance(dtype, EXACT)))
    for dtype, width, group in (("float32", 192, 192), ("bfloat16", 48, 48), ("float16", 192, 64),
                                ("float32", 48, 16), ("bfloat16", 3584, 3584)):
        ops = [operand("x", dtype, [37, width], parent_cols=width + 64, column=32), operand("weight", dtype, [group]),
               operand("out", dtype, [37, width], "out", parent_cols=width + 64, column=32)]
        cases.append((f"rmsnorm-{dtype}-d{width}-g{group}", "rmsnorm", {"dtype": dtype, "eps": 1e-6, "group": group},
                      ops, _tolerance(dtype, EXACT)))
    for dtype, width, norm in (("float32", 48, "layernorm"), ("float16", 192, "rmsnorm"),
                               ("bfloat16", 192, "layernorm"), ("float32", 3584, "rmsnorm")):
        ops = [operand("a", dtype, [37, width]), operand("b", dtype, [37, width]), operand("weight", dtype, [width])]
        if norm == "layernorm":
            ops.append(operand("bias", dtype, [width]))
        ops += [operand("sum_out", dtype, [37, width], "out"), operand("norm_out", dtype, [37, width], "out")]
        cases.append((f"add_norm-{norm}-{dtype}-d{width}", "add_norm", {"dtype": dtype, "eps": 1e-5, "norm": norm},
                      ops, _tolerance(dtype, EXACT)))
    return cases


def _matmul_cases():
    cases = []
    for dtype, rows, inner, columns, epilogue, prologue, *extra in (
            ("float16", 37, 48, 50257, (), None),                          # lm head, odd vocab
            ("float32", 37, 192, 576, ("bias",), None),                    # qkv with bias, TF32
            ("bfloat16", 37, 192, 768, ("bias", "gelu"), None),            # mlp up
            ("float16", 37, 768, 192, ("bias", "residual"), None),         # mlp down + residual
            ("float32", 37, 48, 2 * 136, ("silu_mul",), None),             # gate+up, odd N'
            ("bfloat16", 2, 192, 2 * 512, ("silu_mul",), None),            # decode-shaped gate+up
            ("float16", 2, 192, 50257, (), None),                          # decode lm head
            ("float32", 3, 48, 200, ("bias", "gelu", "residual"), None),   # decode, every fused step
            ("float16", 300, 192, 192, ("residual",), None),               # several row tiles
            ("float16", 3, 2000, 200, ("bias", "residual"), "layernorm"),  # decode + folded LayerNorm
            ("bfloat16", 2, 1000, 2 * 136, ("silu_mul",), "rmsnorm"),      # decode gate+up + folded RMSNorm
            ("float32", 1, 192, 576, ("bias",), "layernorm"),              # one row (no MMA), fp32
            ("float16", 1, 3072, 768, ("bias", "residual"), None, "layernorm"),   # one row, 512-deep K steps
            ("float16", 1, 768, 3072, ("bias", "gelu"), "layernorm"),              # one row + folded LayerNorm
            ("bfloat16", 1, 1024, 2 * 520, ("silu_mul",), "rmsnorm"),             # one row gate+up, odd N'
            ("bfloat16", 1, 2048, 1000, ("residual",), None, "rmsnorm"),          # one row, partial last group
            ("float16", 1, 64, 1000, (), "layernorm", None, "argmax"),            # one row logits + group maxima
            ("float16", 300, 768, 2304, ("bias",), "layernorm"),           # prefill + folded LayerNorm
            ("bfloat16", 37, 1024, 2 * 256, ("silu_mul",), "rmsnorm"),     # prefill gate+up + RMSNorm
            ("float16", 3, 3072, 200, ("bias", "residual"), None, "layernorm"),  # decode, writes LN stats
            ("bfloat16", 37, 192, 1000, ("residual",), None, "rmsnorm"),          # prefill, writes RMS stats
            ("float32", 2, 48, 2 * 80, ("silu_mul",), None, "layernorm"),         # odd width: partial group
            ("float16", 2, 192, 50257, (), "layernorm", None, "argmax"),         # decode lm head + group maxima
            ("bfloat16", 37, 64, 1000, (), None, None, "argmax"),                # prefill logits + group maxima
            # weights stored [N, K] (store_out_in), row statistics over 8-column groups (decode)
            ("float16", 1, 3072, 768, ("bias", "residual"), None, "layernorm", "out_in"),  # one row, 8 rows a CTA
            ("bfloat16", 1, 2048, 1000, ("residual",), None, "rmsnorm", "out_in"),         # one row, partial group
            ("bfloat16", 1, 1024, 2 * 2600, ("silu_mul",), "rmsnorm", None, "out_in"),      # gate+up, 16 rows a CTA
            ("float32", 1, 192, 100, ("bias",), "layernorm", None, "out_in"),              # one row, fp32
            ("float16", 3, 768, 192, ("bias", "residual"), None, "layernorm", "out_in"),   # decode batch, MMA
            ("bfloat16", 37, 192, 1000, ("residual",), "rmsnorm", "rmsnorm", "out_in"),    # prefill MMA
            ("float32", 37, 48, 2 * 136, ("silu_mul",), None, None, "out_in"),             # prefill gate+up, TF32
            # 7-8B shapes: decode row statistics over 8-column groups are 448/512 wide (a 512 block)
            ("bfloat16", 1, 3584, 4608, ("bias",), "rmsnorm"),                     # qwen2-7b qkv, one row
            ("bfloat16", 1, 3584, 4608, ("bias",), None),                          # the same without the norm
            ("bfloat16", 8, 3584, 4608, ("bias",), "rmsnorm"),                     # qwen2-7b qkv, batch 8
            ("bfloat16", 1, 4096, 6144, (), "rmsnorm")):                           # llama-8b qkv, one row
        stats = extra[:1] if extra and extra[0] else []
        argmax = "argmax" in extra
        out_in = "out_in" in extra
        group = DECODE_STATS_GROUP if rows <= 16 else STATS_GROUP  # as lowering: decode-shaped launches
        out_cols = columns // 2 if "silu_mul" in epilogue else columns
        # folded norms read raw residual rows: give them a mean and a spread far from (0, 1)
        ops = [operand("x", dtype, [rows, inner], parent_cols=inner + 8, **({"mean": 1.5, "std": 3.0} if prologue else {}))]
        if prologue:  # per-32-column sums of x's rows (the test fills them from the x it draws)
            ops.append(operand("norm_stats", "float32", [rows, stats_width(inner, prologue, group)]))
        if out_in:  # [N, K] weights; gate and up are each half of the rows of one [gate; up] weight
            ops += [operand(name, dtype, [out_cols, inner], parent_cols=inner + 64)
                    for name in (("weight", "weight_up") if "silu_mul" in epilogue else ("weight",))]
        elif "silu_mul" in epilogue:  # the two halves of one [K, gate | up] weight
            ops += [operand("weight", dtype, [inner, out_cols], parent_cols=columns),
                    operand("weight_up", dtype, [inner, out_cols], parent_cols=columns, column=out_cols)]
        else:
            ops.append(operand("weight", dtype, [inner, columns]))
        if "bias" in epilogue:
            ops.append(operand("bias", dtype, [columns]))
        if "residual" in epilogue:
            ops.append(operand("residual", dtype, [rows, out_cols]))
        ops.append(operand("out", dtype, [rows, out_cols], "out"))
        constants = {"dtype": dtype, "out_dtype": dtype, "epilogue": list(epilogue)}
        if out_in:
            constants["weight_layout"] = "out_in"
        if prologue:
            constants.update(prologue=prologue, eps=1e-5)
        if prologue or stats:
            constants["stats_group"] = group
        if stats:
            constants["row_stats"] = stats[0]
            ops.append(operand("stats", "float32", [rows, stats_width(out_cols, stats[0], group)], "out"))
        if argmax:  # per 32-column group: largest stored value and its first column (greedy sampler)
            constants["row_argmax"] = True
            pairs = argmax_width(out_cols)
            ops += [operand("argmax_values", "float32", [rows, pairs], "out", parent_cols=pairs + 4),
                    operand("argmax_ids", "int32", [rows, pairs], "out", parent_cols=pairs + 4)]
        name = (f"matmul-{dtype}-{rows}x{inner}x{columns}-{'+'.join(epilogue) or 'plain'}" + (f"-{prologue}" if prologue else "")
                + (f"-stats-{stats[0]}" if stats else "") + ("-argmax" if argmax else "") + ("-out_in" if out_in else ""))
        cases.append((name, "matmul", constants, ops, _tolerance(dtype, TENSOR_CORE)))
    return cases


def _row_skip_cases():
    """Prefill matmuls with row_skip: 4 sequences of 128 positions, lengths 128, 0, 70 and 1, so
    whole row tiles lie past their sequence's length (only rows below it are defined)."""
    cases = []
    lengths = [128, 0, 70, 1]
    rows = 128 * len(lengths)
    for dtype, inner, columns, epilogue, stats in (
            ("bfloat16", 1024, 1024, ("residual",), "rmsnorm"),   # o_proj + residual, writes RMS stats
            ("float16", 256, 2 * 384, ("silu_mul",), None)):       # gate+up
        out_cols = columns // 2 if "silu_mul" in epilogue else columns
        ops = [operand("x", dtype, [rows, inner]), _ints("seq_lens", lengths)]
        if "silu_mul" in epilogue:
            ops += [operand("weight", dtype, [inner, out_cols], parent_cols=columns),
                    operand("weight_up", dtype, [inner, out_cols], parent_cols=columns, column=out_cols)]
        else:
            ops.append(operand("weight", dtype, [inner, columns]))
        if "residual" in epilogue:
            ops.append(operand("residual", dtype, [rows, out_cols]))
        ops.append(operand("out", dtype, [rows, out_cols], "out"))
        constants = {"dtype": dtype, "out_dtype": dtype, "epilogue": list(epilogue), "row_skip": True}
        if stats:
            constants.update(row_stats=stats, stats_group=STATS_GROUP)
            ops.append(operand("stats", "float32", [rows, stats_width(out_cols, stats, STATS_GROUP)], "out"))
        name = f"matmul-row-skip-{dtype}-{rows}x{inner}x{columns}-{'+'.join(epilogue)}"
        cases.append((name, "matmul", constants, ops, _tolerance(dtype, TENSOR_CORE)))
    return cases


def _quant_matmul_cases():
    """Quantized weights (runtime/quant.py) on every matmul path: one row on [K, N] and [N, K]
    weights, decode MMA tiles, prefill tiles, gate+up, and an int8 LM head with group maxima."""
    cases = []
    for mode, dtype, rows, inner, columns, epilogue, layout, *extra in (
            ("int4", "bfloat16", 1, 1024, 1000, ("bias",), "in_out"),             # one row [K, N]
            ("int4", "bfloat16", 1, 1024, 384, ("residual",), "out_in"),          # one row [N, K]
            ("int4", "bfloat16", 1, 512, 2 * 520, ("silu_mul",), "out_in"),       # one row gate+up
            ("int4", "float16", 3, 512, 200, ("residual",), "in_out"),            # decode MMA
            ("int4", "bfloat16", 37, 256, 300, ("bias",), "in_out"),              # prefill
            ("int4", "float16", 37, 256, 2 * 136, ("silu_mul",), "in_out"),       # prefill gate+up
            ("int4", "float32", 2, 256, 160, (), "out_in", 64),                   # fp32, 64-wide groups
            ("int8", "bfloat16", 1, 2048, 1000, ("bias",), "in_out"),             # one row, 512-deep steps
            ("int8", "float16", 1, 1024, 384, ("residual",), "out_in"),           # one row [N, K]
            ("int8", "bfloat16", 4, 512, 2 * 520, ("silu_mul",), "in_out"),       # decode MMA gate+up
            ("int8", "float16", 37, 192, 300, ("bias", "gelu"), "in_out"),        # prefill
            ("int8", "float16", 2, 192, 50257, (), "in_out", None, "argmax"),     # LM head + group maxima
            ("fp8", "bfloat16", 1, 1024, 1000, (), "in_out"),                     # one row
            ("fp8", "bfloat16", 1, 1024, 2 * 520, ("silu_mul",), "out_in"),       # one row gate+up
            ("fp8", "float16", 37, 192, 300, ("residual",), "in_out")):           # prefill
        group = (extra[0] if extra and extra[0] else 32) if mode == "int4" else None
        argmax = "argmax" in extra
        out_in = layout == "out_in"
        out_cols = columns // 2 if "silu_mul" in epilogue else columns
        code_dtype = {"int8": "int8", "int4": "uint8", "fp8": "float8_e4m3"}[mode]
        depth = inner // 2 if mode == "int4" else inner
        ops = [operand("x", dtype, [rows, inner], parent_cols=inner + 8)]
        for name in ("weight", "weight_up") if "silu_mul" in epilogue else ("weight",):
            ops.append(operand(name, code_dtype, [out_cols, depth] if out_in else [depth, out_cols],
                               parent_cols=(depth if out_in else out_cols) + 128))
            if mode == "int4":
                groups = [out_cols, inner // group] if out_in else [inner // group, out_cols]
                ops += [operand(f"{name}_scale", dtype if dtype != "float32" else "float32", groups),
                        operand(f"{name}_min", dtype if dtype != "float32" else "float32", groups)]
            else:
                ops.append(operand(f"{name}_scale", "float32", [out_cols]))
        if "bias" in epilogue:
            ops.append(operand("bias", dtype, [columns]))
        if "residual" in epilogue:
            ops.append(operand("residual", dtype, [rows, out_cols]))
        ops.append(operand("out", dtype, [rows, out_cols], "out"))
        constants = {"dtype": dtype, "out_dtype": dtype, "epilogue": list(epilogue), "weight_quant": mode}
        if group:
            constants["quant_group"] = group
        if out_in:
            constants["weight_layout"] = "out_in"
        if argmax:
            constants["row_argmax"] = True
            pairs = argmax_width(out_cols)
            ops += [operand("argmax_values", "float32", [rows, pairs], "out", parent_cols=pairs + 4),
                    operand("argmax_ids", "int32", [rows, pairs], "out", parent_cols=pairs + 4)]
        name = (f"matmul-{mode}-{dtype}-{rows}x{inner}x{columns}-{'+'.join(epilogue) or 'plain'}-{layout}"
                + (f"-g{group}" if group else "") + ("-argmax" if argmax else ""))
        cases.append((name, "matmul", constants, ops, _tolerance(dtype, TENSOR_CORE)))
    return cases


def _elementwise_cases():
    cases = []
    for template, inputs, bound in (("gelu", ["x"], TRANSCENDENTAL), ("silu_mul", ["gate", "up"], TRANSCENDENTAL),
                                    ("add", ["a", "b"], EXACT)):
        for dtype, width in (("float32", 48), ("float16", 192), ("bfloat16", 3584)):
            ops = [operand(name, dtype, [37, width], parent_cols=width * 2, column=width if i else 0)
                   for i, name in enumerate(inputs)]
            ops.append(operand("out", dtype, [37, width], "out"))
            cases.append((f"{template}-{dtype}-d{width}", template, {"dtype": dtype}, ops, _tolerance(dtype, bound)))
    return cases


def _rope_cases():
    """Rows of two sequences at start positions 0 and 7: 19 positions each (one row per CTA; the
    second sequence's length 11 leaves its last rows undefined) and, tiled 32 rows to a CTA,
    64 positions with lengths 64 and 37 (a tile wholly past the length, one partly)."""
    cases = []
    for dtype, heads, head_dim, norm, q_heads, seq, lengths in (
            ("float32", 3, 16, False, None, 19, [19, 11]), ("float16", 4, 64, False, None, 19, [19, 11]),
            ("bfloat16", 2, 128, False, None, 19, [19, 11]), ("float16", 6, 32, False, None, 19, [19, 11]),
            ("bfloat16", 8, 128, True, None, 19, [19, 11]), ("float32", 3, 16, True, None, 19, [19, 11]),
            ("bfloat16", 24, 128, True, 16, 19, [19, 11]),  # + q/k norm; a merged q|k rope (16 q, 8 k heads)
            ("float32", 3, 16, False, None, 64, [64, 37]), ("bfloat16", 24, 128, True, 16, 64, [64, 37])):
        width, rows = heads * head_dim, 2 * seq
        ops = [operand("x", dtype, [rows, width], parent_cols=width + 64)]
        if norm:
            ops.append(operand("norm_weight", dtype, [head_dim]))
        if q_heads:
            ops.append(operand("k_norm_weight", dtype, [head_dim]))
        ops += [_ints("start_pos", [0, 7]), _ints("seq_lens", lengths),
                operand("cos", "float32", [80, head_dim // 2]), operand("sin", "float32", [80, head_dim // 2]),
                operand("out", dtype, [rows, width], "out", parent_cols=width + 64)]
        constants = {"dtype": dtype, "heads": heads, "head_dim": head_dim, "seq": seq}
        if norm:
            constants["norm_eps"] = 1e-6
        if q_heads:
            constants["q_heads"] = q_heads
        name = (f"rope-{dtype}-h{heads}-d{head_dim}" + ("-norm" if norm else "") + (f"-q{q_heads}" if q_heads else "")
                + f"-s{seq}")
        cases.append((name, "rope", constants, ops, _tolerance(dtype, TRANSCENDENTAL if norm else EXACT)))
    return cases


def _last_rows_cases():
    """Each sequence's last row of a 3 x 19-row chunk (lengths 19, 0 and 7), from a strided view:
    bf16 rows wider than one 1024-column block, and float32 norm statistics."""
    cases = []
    for dtype, width in (("bfloat16", 1100), ("float32", 32)):
        ops = [operand("x", dtype, [57, width], parent_cols=width + 8), _ints("seq_lens", [19, 0, 7]),
               operand("out", dtype, [3, width], "out")]
        cases.append((f"last-rows-{dtype}-w{width}", "last_rows", {"dtype": dtype, "seq": 19}, ops, EXACT))
    return cases


def _attention_cases():
    cases = []
    for phase, dtype, heads, kv_heads, head_dim, starts, lengths, *rope in (
            ("prefill", "float32", 3, 3, 16, [0, 7], [19, 11]),
            ("prefill", "float16", 4, 2, 64, [0, 20], [19, 19]),
            ("prefill", "bfloat16", 2, 1, 128, [30, 0], [7, 19]),
            ("prefill", "float16", 6, 3, 32, [0, 0], [19, 0]),
            ("decode", "float32", 3, 3, 16, [0, 30, 63], [1, 1, 0]),
            ("decode", "float16", 4, 2, 64, [5, 62, 17], [1, 1, 1]),
            ("decode", "bfloat16", 2, 1, 128, [0, 40, 9], [1, 0, 1]),
            ("decode", "float16", 6, 3, 32, [62, 1, 33], [1, 1, 1]),
            ("decode", "bfloat16", 4, 2, 64, [0, 63, 17], [1, 1, 1], "norm"),  # rotates q/k (Qwen3 norms)
            ("decode", "float32", 3, 1, 32, [5, 40, 0], [1, 0, 1], "plain")):   # rotates q/k (Llama)
        batch = len(starts)
        seq = 1 if phase == "decode" else 19
        width, kv_width = heads * head_dim, kv_heads * head_dim
        qkv_cols = width + 2 * kv_width
        ops = [operand("q", dtype, [batch * seq, width], parent_cols=qkv_cols),
               operand("k", dtype, [batch * seq, kv_width], parent_cols=qkv_cols, column=width),
               operand("v", dtype, [batch * seq, kv_width], parent_cols=qkv_cols, column=width + kv_width),
               operand("k_cache", dtype, [batch, kv_heads, 64, head_dim], "inout"),  # history below start_pos
               operand("v_cache", dtype, [batch, kv_heads, 64, head_dim], "inout"),
               _ints("start_pos", starts), _ints("seq_lens", lengths)]
        constants = {"dtype": dtype, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "seq": seq,
                     "scale": head_dim ** -0.5, "phase": phase}
        if rope:  # q and k arrive unrotated; tables for 64 positions
            ops += [operand("cos", "float32", [64, head_dim // 2]), operand("sin", "float32", [64, head_dim // 2])]
            constants["rope"] = True
            if rope[0] == "norm":
                ops += [operand("norm_weight", dtype, [head_dim]), operand("k_norm_weight", dtype, [head_dim])]
                constants["norm_eps"] = 1e-6
        ops.append(operand("out", dtype, [batch * seq, width], "out"))
        bound = TENSOR_CORE if phase == "prefill" else TRANSCENDENTAL
        cases.append((f"attention-{phase}-{dtype}-h{heads}-kvh{kv_heads}-d{head_dim}" + (f"-rope-{rope[0]}" if rope else ""),
                      "attention", constants, ops,
                      _tolerance(dtype, bound)))
    return cases


def _sample_cases():
    """The sampler: greedy picks, prefill chunks that do or do not complete a prompt, an inactive
    sequence, an EOS hit, and seeded top-k/top-p/penalty draws (hash bit-identical to NumPy)."""
    cases = []
    greedy, stops = (0.0, 1.0, 1.0, 0), [3, 17, -1, -1, -1, -1, -1, -1]
    for name, dtype, phase, seq, vocab, starts, lengths, prompt_lens, settings, eos, *partials in (
            ("greedy-decode", "float16", "decode", 1, 50257, [5, 40, 7], [1, 1, 0], [0, 0, 0], greedy, stops),
            ("greedy-prefill", "bfloat16", "prefill", 5, 1000, [0, 3], [5, 2], [5, 9], greedy, stops),
            ("sampled-decode", "float32", "decode", 1, 1000, [9, 30], [1, 1], [0, 0], (0.8, 0.9, 1.1, 50), stops),
            ("penalty-decode", "float16", "decode", 1, 5000, [20, 12], [1, 1], [0, 0], (0.0, 1.0, 1.3, 0), stops),
            ("eos-prefill", "float16", "prefill", 3, 8, [0], [3], [3], greedy, list(range(8))),  # every id ends
            # greedy from the logits matmul's group maxima (drawn from the logits), and a sampled
            # pick and a penalized one that must read the logits instead
            ("maxima-decode", "bfloat16", "decode", 1, 151936, [5, 40, 7], [1, 1, 0], [0, 0, 0], greedy, stops, True),
            ("maxima-prefill", "float16", "prefill", 4, 50257, [0, 3], [4, 2], [4, 9], greedy, stops, True),
            ("maxima-sampled", "float32", "decode", 1, 1000, [9, 30], [1, 1], [0, 0], (0.8, 0.9, 1.1, 50), stops, True),
            ("maxima-penalty", "float16", "decode", 1, 5000, [20, 12], [1, 1], [0, 0], (0.0, 1.0, 1.3, 0), stops, True)):
        batch, rows, history = len(starts), len(starts) * seq, 64
        temperature, top_p, penalty, top_k = settings
        ops = [operand("logits", dtype, [rows, vocab], parent_cols=vocab + 7),
               _ints("start_pos", starts), _ints("seq_lens", lengths),
               operand("params", "float32", [batch, 4], values=[temperature, top_p, penalty, 0.0] * batch),
               operand("options", "int32", [batch, 4],
                       values=[v for b in range(batch) for v in (top_k, 1234 + b, prompt_lens[b], 0)]),
               _ints("eos", eos),
               operand("history", "int32", [batch, history], "inout",
                       values=[(7 * i + 3) % vocab for i in range(batch * history)]),
               operand("next_tokens", "int32", [batch, 1], "inout", values=[-5] * batch),
               operand("next_start", "int32", [batch], "inout", values=[-5] * batch),
               operand("next_lens", "int32", [batch], "inout", values=[1] * batch),
               operand("scratch", "float32", [batch, vocab], parent_cols=vocab + 9)]
        constants = {"dtype": dtype, "phase": phase, "seq": seq}
        if partials:  # the test fills them from the logits it draws
            pairs = argmax_width(vocab)
            constants["argmax_partials"] = True
            ops += [operand("argmax_values", "float32", [rows, pairs], parent_cols=pairs + 3),
                    operand("argmax_ids", "int32", [rows, pairs], parent_cols=pairs + 3)]
        cases.append((f"sample-{name}-{dtype}-v{vocab}", "sample", constants, ops, 1e-12))  # ids: exact
    return cases


def all_cases():
    """(name, template, generic constants, operands, rel. error bound) of every GPU kernel case;
    the operands in the template's order (compiler/kernels/<template>.py roles, as lowering uses)."""
    cases = (_embed_cases() + _norm_cases() + _matmul_cases() + _row_skip_cases() + _quant_matmul_cases()
             + _elementwise_cases() + _rope_cases() + _last_rows_cases()
             + _attention_cases() + _sample_cases())
    return [(name, template, constants, ordered(template, constants, {o["name"]: o for o in ops}), bound)
            for name, template, constants, ops, bound in cases]


def signature_of(entry):
    """(dtype, ndim, base alignment, stride divisibility) facts that hold for this test's buffers."""
    operand = {**entry, "offset": entry["offset"] * ITEMSIZE[entry["dtype"]]}
    dtype, ndim, base, strides = alignment_facts(operand)
    return (dtype, ndim, base, tuple(strides))


def export_case(case, sm, out_dir, cache_dir):
    """Export one case; returns its manifest entry."""
    from compiler import cutile_export
    name, template, constants, ops, bound = case
    shapes = [tuple(o["shape"]) for o in ops]
    generic = {**constants, "epilogue": tuple(constants["epilogue"])} if "epilogue" in constants else constants
    full = {**generic, **choose_tiles(sm, template, generic, shapes)}
    started = time.perf_counter()
    kernel = cutile_export.export_cubin(template, full, [signature_of(o) for o in ops], sm, cache_dir)
    seconds = time.perf_counter() - started
    cubin_name = f"{name}.cubin"
    with open(os.path.join(out_dir, cubin_name), "wb") as handle:
        handle.write(kernel.cubin)
    grid = launch_grid(template, full, shapes)
    return {"name": name, "template": template, "constants": full, "sm": sm, "symbol": kernel.symbol,
            "block": kernel.block_threads, "grid": [int(g) for g in grid], "cubin": cubin_name, "tolerance": bound,
            "operands": ops, "export_seconds": round(seconds, 3)}


def export_all(sm, out_dir, cache_dir, workers=2):
    """Export every case for `sm` into `out_dir` and write its manifest."""
    os.makedirs(out_dir, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        entries = list(pool.map(lambda case: export_case(case, sm, out_dir, cache_dir), all_cases()))
    manifest = {"format": "cgc-gpu-test-cubins", "version": 1, "sm": sm, "cases": entries}
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
    return manifest


def main():
    parser = argparse.ArgumentParser(description="export the standalone GPU kernel test cases")
    parser.add_argument("--sm", type=int, default=90)
    parser.add_argument("--out", default=os.path.join("artifacts", "gpu_cubins"))
    parser.add_argument("--cache-dir", default=os.environ.get("CGC_CACHE_DIR", os.path.join("artifacts", "cache")))
    args = parser.parse_args()
    started = time.perf_counter()
    manifest = export_all(args.sm, args.out, args.cache_dir)
    for entry in manifest["cases"]:
        print(f"{entry['name']:<48} block {entry['block']:>4}  grid {str(tuple(entry['grid'])):<16} "
              f"{entry['export_seconds']:6.2f} s")
    print(f"{len(manifest['cases'])} cases for sm_{args.sm} in {time.perf_counter() - started:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
