"""Every kernel on the GPU against NumPy, in two ways.

1. Standalone (`test_standalone_kernel`): cubins exported ahead of time on a CPU machine by
   tests/gpu/export_test_cubins.py into the folder named by CGC_GPU_CUBINS (needs no cuda.tile
   here). Each case launches one cubin with the cutile_python_v1 calling convention on random
   inputs with odd shapes, outputs poisoned with NaN, and compares with a NumPy reference written
   below; bytes of the outputs' buffers outside the view must stay untouched.
2. Plan-based (`test_each_launch_matches_numpy`): for each plan of gpu_cases.KERNEL_CASES (odd
   widths 48/192, vocab 50257, head_dim 16/32/64, GQA 3, a 37-row bucket, fp32/fp16/bf16), both
   executors get the same fresh random tokens; the GPU arena and outputs are poisoned with NaN
   first. After each launch, its output operands are compared with the NumPy executor's; the
   first mismatch names the launch, op and template. Decode runs twice: late and early in the
   cache (long plans split their attention, compared after merging the splits).
"""

import json
import os
import zlib

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

from compiler.compile import compile_plan  # noqa: E402
from compiler.kernels import roles  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.dtypes import from_float32, itemsize, to_float32  # noqa: E402
from runtime.numpy_executor import NumpyExecutor  # noqa: E402
from runtime.kernels import View  # noqa: E402
from runtime.kernels.attention_merge import merge_splits  # noqa: E402
from runtime.kernels.matmul import group_argmax  # noqa: E402
from runtime.kernels.shared import norm_rstd, row_stats  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from runtime.quant import dequantize, e4m3_decode, e4m3_encode  # noqa: E402
from tests.gpu.gpu_cases import KERNEL_CASES, kernel_case_options  # noqa: E402

BOUNDS = {"float32": 1e-3, "float16": 2e-2, "bfloat16": 5e-2}  # float32 multiplies in float32 (TF32: 5e-3)


def _outputs(template, args, constants):
    """The operands a launch writes, by role (compiler/kernels/<template>.py)."""
    order = roles(template, constants)
    named = dict(zip(order, args))
    if template == "sample":
        return [named[r] for r in ("history", "next_tokens", "next_start", "next_lens")]
    if template == "attention":  # split: partial outputs (merged before comparing), then the cache
        return [named["partials" if constants.get("kv_splits") else "out"], named["k_cache"], named["v_cache"]]
    if template == "add_norm":
        return [named["sum_out"], named["norm_out"]]
    return args[order.index("out"):]  # out, (its row statistics), (its group maxima and their ids)


def _written(template, constants, args, operand, values):
    """The columns a launch defines: LayerNorm row statistics leave the groups between G and the
    power of two P of each half unwritten."""
    named = dict(zip(roles(template, constants), args))
    if constants.get("row_stats") != "layernorm" or operand is not named.get("stats"):
        return values
    half, groups = values.shape[1] // 2, -(-named["out"]["shape"][1] // 32)
    return np.concatenate([values[:, :groups], values[:, half:half + groups]], axis=1)


def _gpu_array(executor, operand):
    return to_float32(executor._view(operand).get(), operand["dtype"])


@pytest.fixture(scope="module", params=KERNEL_CASES, ids=[case[0] for case in KERNEL_CASES])
def case_plan(request, tmp_path_factory):
    sm = int(cupy.cuda.Device().compute_capability)
    path = str(tmp_path_factory.mktemp("plans") / f"{request.param[0]}.plan")
    compile_plan(request.param[1], path, kernel_case_options(request.param, sm))
    return load_plan(path)


def _decode_starts(batch, max_seq, late):
    """Decode positions: in 64-position plans early in the cache; in longer ones (split attention)
    near the end, where every split of the first sequence has cache tiles and the first split
    loops over a second, or early, where the later splits have none."""
    if max_seq <= 64:
        first = [5, 9] if late else [1, 3]
        return (first + [12 + 5 * b for b in range(batch)])[:batch]
    first = [max_seq - 40, max_seq - 150] if late else [20, 70]
    return (first + [max_seq // 2 + 11 * b for b in range(batch)])[:batch]


@pytest.mark.parametrize("program", ["prefill", "decode", "decode-early"])
def test_each_launch_matches_numpy(case_plan, program):
    name = next(n for n in case_plan["programs"] if n.startswith(program.split("-")[0]))
    spec = case_plan["programs"][name]
    batch, seq = spec["batch"], spec["seq"]
    rng = np.random.default_rng(17)
    vocab = case_plan["model"]["config"]["vocab_size"]
    tokens = rng.integers(0, vocab, size=(batch, seq)).astype(np.int32)
    start = np.array([0] * batch if program == "prefill" else
                     _decode_starts(batch, case_plan["limits"]["max_seq"], program == "decode"), dtype=np.int32)
    lengths = np.full(batch, seq, dtype=np.int32)

    reference = NumpyExecutor(case_plan)
    gpu = CupyExecutor(case_plan, use_graphs=False)
    for region in ("arena", "io"):
        gpu.regions[region].memset(0xFF, case_plan["regions"][region])  # NaN in every float
    # the sampler's settings and the decode inputs it writes, as both executors start
    for operand in [*case_plan["generation"].values(), *case_plan["programs"]["decode"]["inputs"].values()]:
        gpu.write(operand, View(reference.regions, operand).array)
    if program != "prefill":  # a KV cache with history, the same bytes on both sides
        dtype = case_plan["model"]["dtype"]
        count = case_plan["regions"]["kv"] // itemsize(dtype)
        history = from_float32(0.5 * rng.standard_normal(count), dtype).view(np.uint8)
        reference.regions["kv"][:history.size] = history
        gpu.regions["kv"].copy_from_host(history.ctypes.data, history.size)

    inputs, ref_launches, _ = reference._programs[name]
    for key, value in (("tokens", tokens), ("start_pos", start), ("seq_lens", lengths)):
        inputs[key].write(value)
    gpu.set_inputs(name, tokens, start, lengths)
    _, gpu_launches, _ = gpu._programs[name]
    dtype = case_plan["model"]["dtype"]
    for index, ((kernel, constants, views), launch, (function, grid, block, args, _)) in enumerate(
            zip(ref_launches, spec["launches"], gpu_launches)):
        kernel(constants, *views)
        function(grid, block, args, stream=gpu.stream)
        gpu.stream.synchronize()
        template = case_plan["kernels"][launch["kernel"]]["template"]
        named = dict(zip(roles(template, constants), launch["args"]))
        for operand in _outputs(template, launch["args"], constants):
            expected = _written(template, constants, launch["args"], operand, View(reference.regions, operand).read())
            actual = _written(template, constants, launch["args"], operand, _gpu_array(gpu, operand))
            if template == "attention" and operand is named.get("partials"):  # split: the merged rows
                # (NumPy gives split 0 every key, the kernel spreads them: only the merge agrees)
                lse, shape = named["partial_lse"], (constants["kv_splits"], constants["head_dim"])
                expected = merge_splits(expected, View(reference.regions, lse).read(), *shape)
                actual = merge_splits(actual, _gpu_array(gpu, lse), *shape)
            if template == "sample":  # token ids and positions: exact
                mismatched = np.argwhere(actual != expected)
                assert mismatched.size == 0, f"launch {index} (sample): {operand['shape']} differs at {mismatched[:4].tolist()}"
                continue
            if constants.get("row_argmax") and operand is named["argmax_ids"]:
                # a group's first maximum moves with rounding-level differences from NumPy: check the
                # ids (and the maxima, exactly) against the kernel's own stored output instead
                values, ids = group_argmax(_gpu_array(gpu, named["out"]))
                assert np.array_equal(_gpu_array(gpu, named["argmax_values"]), values), f"launch {index}: group maxima"
                assert np.array_equal(actual, ids), f"launch {index}: group argmax ids"
                continue
            scale = max(float(np.abs(expected).max()), 1e-6)
            error = float(np.nan_to_num(np.abs(actual - expected), nan=np.inf).max()) / scale
            assert error < BOUNDS[dtype], f"launch {index} ({launch['op']}, {template}): rel err {error:.3g}"


# ---------------------------------------------------------------------------------------------
# Standalone cubins (tests/gpu/export_test_cubins.py), launched with the cutile_python_v1
# convention: every array parameter is (pointer u64, shape[ndim] u32, stride[ndim] u32 in
# elements), in operand order; the block size is the cubin's EIATTR_REQNTID (manifest "block").

CUBIN_DIR = os.environ.get("CGC_GPU_CUBINS")
STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int32": np.int32, "int8": np.int8,
           "uint8": np.uint8, "float8_e4m3": np.uint8}
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int8": 1, "uint8": 1, "float8_e4m3": 1}


def _load_manifest():
    if not CUBIN_DIR:
        return None
    with open(os.path.join(CUBIN_DIR, "manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


MANIFEST = _load_manifest()
STANDALONE_CASES = MANIFEST["cases"] if MANIFEST else [None]


def encode(values, dtype):
    """float values -> storage bits of `dtype` (bfloat16: round to nearest even, as uint16)."""
    values = np.asarray(values, dtype=np.float32)
    if dtype == "bfloat16":
        bits = values.view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        return np.where(np.isnan(values), np.uint16(0x7FC0), rounded)
    if dtype == "float8_e4m3":
        return e4m3_encode(np.nan_to_num(values))
    if dtype in ("int8", "uint8"):
        info = np.iinfo(STORAGE[dtype])
        return np.clip(np.rint(np.nan_to_num(values)), info.min, info.max).astype(STORAGE[dtype])
    return values.astype(STORAGE[dtype])


def decode(bits, dtype):
    """storage bits -> float64 values (int32 stays integral)."""
    if dtype == "bfloat16":
        return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype == "float8_e4m3":
        return e4m3_decode(bits).astype(np.float64)
    return bits.astype(np.float64)


def view_of(buffer, entry):
    """The operand's strided window onto its host buffer."""
    size = buffer.itemsize
    return np.lib.stride_tricks.as_strided(buffer[entry["offset"]:], shape=tuple(entry["shape"]),
                                           strides=tuple(s * size for s in entry["strides"]))


def _input_values(case, entry, rng):
    shape, name = tuple(entry["shape"]), entry["name"]
    if "mean" in entry:
        return entry["mean"] + entry["std"] * rng.standard_normal(shape)
    if name in ("cos", "sin"):
        angles = rng.uniform(0, 2 * np.pi, size=shape)
        return np.cos(angles) if name == "cos" else np.sin(angles)
    mode = case["constants"].get("weight_quant")
    if mode and name in ("weight", "weight_up"):  # codes: int8 in [-127, 127], int4 byte pairs, e4m3 around +-16
        return {"int8": lambda: rng.integers(-127, 128, size=shape), "int4": lambda: rng.integers(0, 256, size=shape),
                "fp8": lambda: 16 * rng.standard_normal(shape)}[mode]()
    if mode and name.endswith("_scale"):  # weights of about 1/sqrt(K): codes' spread times the scale
        depth = case["operands"][0]["shape"][1]
        spread = {"int8": 73.0, "int4": 4.6, "fp8": 16.0}[mode]
        return rng.uniform(0.5, 1.5, size=shape) / (spread * np.sqrt(depth))
    if mode and name.endswith("_min"):  # about -7.5 codes' worth: int4 weights centered near 0
        depth = case["operands"][0]["shape"][1]
        return -rng.uniform(6.0, 9.0, size=shape) / (4.6 * np.sqrt(depth))
    if name == "weight" and case["template"] == "matmul":
        return rng.standard_normal(shape) / np.sqrt(shape[0])
    if name == "weight":
        return 1.0 + 0.2 * rng.standard_normal(shape)
    if name in ("bias", "residual"):
        return 0.5 * rng.standard_normal(shape)
    return rng.standard_normal(shape)


def make_buffers(case, rng):
    """Host buffers (storage bits) of every operand: inputs random, outputs NaN, caches random."""
    buffers = {}
    for entry in case["operands"]:
        dtype = entry["dtype"]
        if entry["name"].startswith("argmax_") and entry["role"] == "in":  # the drawn logits' group maxima
            logits = next(e for e in case["operands"] if e["name"] == "logits")
            values, ids = group_argmax(decode(view_of(buffers["logits"], logits), logits["dtype"]))
            buffer = np.zeros(entry["buffer"], dtype=np.int32) if dtype == "int32" else encode(np.zeros(entry["buffer"]), dtype)
            view_of(buffer, entry)[...] = ids if dtype == "int32" else encode(values, dtype)
        elif dtype == "int32" and "values" not in entry:  # an int output: poisoned
            buffer = np.full(entry["buffer"], -77, dtype=np.int32)
        elif dtype == "int32":
            buffer = np.zeros(entry["buffer"], dtype=np.int32)
            view_of(buffer, entry)[...] = np.asarray(entry["values"], dtype=np.int32).reshape(entry["shape"])
        elif "values" in entry:  # chosen settings (the sampler's params)
            buffer = encode(np.zeros(entry["buffer"]), dtype)
            view_of(buffer, entry)[...] = encode(np.asarray(entry["values"]).reshape(entry["shape"]), dtype)
        elif entry["role"] == "out":
            buffer = encode(np.full(entry["buffer"], np.nan), dtype)
        else:
            buffer = encode(rng.standard_normal(entry["buffer"]), dtype)
            if entry["name"] == "norm_stats":  # a folded norm's statistics: those of the x rows drawn
                x = next(e for e in case["operands"] if e["name"] == "x")
                rows = decode(view_of(buffers["x"], x), x["dtype"]).astype(np.float32)
                view_of(buffer, entry)[...] = encode(row_stats(rows, case["constants"]["prologue"],
                                                               _stats_group(case["constants"])), dtype)
            elif entry["role"] == "in":
                view_of(buffer, entry)[...] = encode(_input_values(case, entry, rng), dtype)
        buffers[entry["name"]] = buffer
    return buffers


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _layernorm(x, weight, bias, eps):
    centered = x - x.mean(axis=-1, keepdims=True)
    return centered / np.sqrt((centered ** 2).mean(axis=-1, keepdims=True) + eps) * weight + bias


def _rmsnorm(x, weight, eps, group):
    runs = x.reshape(x.shape[0], -1, group)
    return (runs / np.sqrt((runs ** 2).mean(axis=-1, keepdims=True) + eps) * weight).reshape(x.shape)


def _stats_group(constants):
    return constants["stats_group"]


def _expected_stats(rows, norm, group):
    """Row statistics of stored rows; LayerNorm's groups between G and the power of two P are
    never written (NaN: not compared)."""
    stats = row_stats(rows.astype(np.float32), norm, group).astype(np.float64)
    if norm == "layernorm":
        half, groups = stats.shape[1] // 2, -(-rows.shape[1] // group)
        stats[:, groups:half] = np.nan
        stats[:, half + groups:] = np.nan
    return stats


def _ref_embed(c, v):
    tokens = v["tokens"].astype(np.int64)
    batch, seq = tokens.shape
    values = v["table"][tokens.reshape(-1)]
    if c["positions"]:
        positions = (v["start_pos"].astype(np.int64)[:, None] + np.arange(seq)[None, :]).reshape(-1)
        values = values + v["pos_table"][positions]
    expected = {"out": values}
    if c.get("row_stats"):
        expected["stats"] = _expected_stats(values, c["row_stats"], _stats_group(c))
    return expected


def _ref_layernorm(c, v):
    return {"out": _layernorm(v["x"], v["weight"], v["bias"], c["eps"])}


def _ref_rmsnorm(c, v):
    return {"out": _rmsnorm(v["x"], v["weight"], c["eps"], c["group"])}


def _ref_add_norm(c, v):
    total = decode(encode(v["a"] + v["b"], c["dtype"]), c["dtype"])  # the kernel normalizes the stored sum
    if c["norm"] == "layernorm":
        normed = _layernorm(total, v["weight"], v["bias"], c["eps"])
    else:
        normed = _rmsnorm(total, v["weight"], c["eps"], total.shape[1])
    return {"sum_out": total, "norm_out": normed}


def _dequantized(c, v, name):
    """A weight operand's values; quantized ones from their codes and scales (runtime/quant.py)."""
    mode = c.get("weight_quant")
    if mode is None:
        return v[name]
    layout = c.get("weight_layout", "in_out")
    if mode == "int4":
        return dequantize("int4", layout, v[name].astype(np.uint8), v[f"{name}_scale"], v[f"{name}_min"],
                          c["quant_group"]).astype(np.float64)
    scale = v[f"{name}_scale"]
    return v[name] * (scale[:, None] if layout == "out_in" else scale[None, :])


def _ref_matmul(c, v):
    x = v["x"]
    out_in = c.get("weight_layout") == "out_in"  # weights given [N, K]
    weight = _dequantized(c, v, "weight")
    acc = x @ (weight.T if out_in else weight)
    if "silu_mul" in c["epilogue"]:
        weight_up = _dequantized(c, v, "weight_up")
        up = x @ (weight_up.T if out_in else weight_up)
    else:
        up = None
    if c.get("prologue"):  # a folded norm: rows scaled by 1/sqrt(var + eps) from the given stats
        rstd = norm_rstd(v["norm_stats"], x.shape[1], c["prologue"], c["eps"])
        acc = acc * rstd
        up = None if up is None else up * rstd
    for step in c["epilogue"]:
        if step == "bias":
            acc = acc + v["bias"]
        elif step == "gelu":
            acc = _gelu(acc)
        elif step == "residual":
            acc = acc + v["residual"]
        elif step == "silu_mul":
            acc = _silu(acc) * up
    expected = {"out": acc}
    if c.get("row_stats"):  # statistics of the stored (rounded) output
        expected["stats"] = _expected_stats(decode(encode(acc, c["out_dtype"]), c["out_dtype"]), c["row_stats"],
                                            _stats_group(c))
    if c.get("row_skip"):  # rows at or past their sequence's length are undefined
        per_sequence = x.shape[0] // len(v["seq_lens"])
        past = np.arange(x.shape[0]) % per_sequence >= np.repeat(v["seq_lens"], per_sequence)
        for name in expected:
            expected[name] = np.where(past[:, None], np.nan, expected[name])
    if c.get("row_argmax"):  # values within tolerance; ids (and values exactly) against the kernel's own out
        expected["argmax_values"] = group_argmax(decode(encode(acc, c["out_dtype"]), c["out_dtype"]))[0]
        expected["argmax_ids"] = None
    return expected


def _ref_last_rows(c, v):
    lengths = np.maximum(v["seq_lens"].astype(np.int64), 1)
    return {"out": v["x"][np.arange(len(lengths)) * c["seq"] + lengths - 1]}


def _ref_rope(c, v):
    heads, head_dim, seq = c["heads"], c["head_dim"], c["seq"]
    rows = v["x"].shape[0]
    positions = (v["start_pos"].astype(np.int64)[:, None] + np.arange(seq)[None, :]).reshape(-1)
    cos, sin = v["cos"][positions][:, None, :], v["sin"][positions][:, None, :]
    x = v["x"].reshape(rows, heads, head_dim)
    if "norm_eps" in c:
        scales = np.tile(v["norm_weight"], (heads, 1))
        if "q_heads" in c:
            scales[c["q_heads"]:] = v["k_norm_weight"]
        x = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + c["norm_eps"]) * scales
    first, second = x[..., :head_dim // 2], x[..., head_dim // 2:]
    rotated = np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    rotated = rotated.reshape(rows, heads * head_dim)
    if "seq_lens" in v:  # rows at or past their sequence's length are undefined
        past = np.arange(rows) % seq >= np.repeat(v["seq_lens"], seq)
        rotated = np.where(past[:, None], np.nan, rotated)
    return {"out": rotated}


def _ref_attention(c, v):
    heads, kv_heads, head_dim, seq = c["heads"], c["kv_heads"], c["head_dim"], c["seq"]
    group = heads // kv_heads
    if c.get("rope"):  # q and k as the rope kernel would have stored them (rounded to the dtype)
        v = dict(v)
        for name, count, scale in (("q", heads, "norm_weight"), ("k", kv_heads, "k_norm_weight")):
            rope = {"heads": count, "head_dim": head_dim, "seq": seq}
            values = {"x": v[name], "start_pos": v["start_pos"], "cos": v["cos"], "sin": v["sin"]}
            if "norm_eps" in c:
                rope["norm_eps"], values["norm_weight"] = c["norm_eps"], v[scale]
            v[name] = decode(encode(_ref_rope(rope, values)["out"], c["dtype"]), c["dtype"])
    k_cache, v_cache = v["k_cache"].copy(), v["v_cache"].copy()
    for b, (start, length) in enumerate(zip(v["start_pos"].astype(int), v["seq_lens"].astype(int))):
        for s in range(length):  # the kernel appends the chunk's real rows first
            k_cache[b, :, start + s] = v["k"][b * seq + s].reshape(kv_heads, head_dim)
            v_cache[b, :, start + s] = v["v"][b * seq + s].reshape(kv_heads, head_dim)
    out = np.zeros_like(v["q"])
    for b, (start, length) in enumerate(zip(v["start_pos"].astype(int), v["seq_lens"].astype(int))):
        for s in range(length):
            row, last = b * seq + s, start + s
            for head in range(heads):
                query = v["q"][row, head * head_dim:(head + 1) * head_dim]
                keys = k_cache[b, head // group, :last + 1]
                scores = keys @ query * c["scale"]
                weights = np.exp(scores - scores.max())
                out[row, head * head_dim:(head + 1) * head_dim] = weights @ v_cache[b, head // group, :last + 1] \
                    / weights.sum()
    return {"out": out, "k_cache": k_cache, "v_cache": v_cache}


def _ref_sample(c, v):
    from runtime.kernels.sample import sample

    class Operand:  # the NumPy kernel's view interface over the case's arrays
        def __init__(self, values, dtype):
            self.array, self.dtype = values, dtype

        def read(self):
            return self.array.astype(np.int64 if self.dtype == "int32" else np.float32)

    outputs = {name: v[name].astype(np.int32).copy() for name in ("history", "next_tokens", "next_start", "next_lens")}
    ints = {"start_pos", "seq_lens", "options", "eos", *outputs}
    names = ("logits", "start_pos", "seq_lens", "params", "options", "eos", *outputs, "scratch")
    arrays = {name: outputs.get(name, v[name]) for name in names + (("argmax_values", "argmax_ids")
                                                                    if c.get("argmax_partials") else ())}
    ints.add("argmax_ids")
    sample(c, *(Operand(array, "int32" if name in ints else "float32") for name, array in arrays.items()))
    return outputs


REFERENCES = {"embed": _ref_embed, "layernorm": _ref_layernorm, "rmsnorm": _ref_rmsnorm, "add_norm": _ref_add_norm,
              "matmul": _ref_matmul, "gelu": lambda c, v: {"out": _gelu(v["x"])},
              "silu_mul": lambda c, v: {"out": _silu(v["gate"]) * v["up"]},
              "add": lambda c, v: {"out": v["a"] + v["b"]}, "rope": _ref_rope,
              "attention": _ref_attention, "sample": _ref_sample, "last_rows": _ref_last_rows}


def reference_outputs(case, buffers):
    """{output operand name: expected float64 values} from the inputs' stored values."""
    values = {e["name"]: decode(view_of(buffers[e["name"]], e), e["dtype"]) for e in case["operands"]}
    return REFERENCES[case["template"]](case["constants"], values)


def check_outputs(case, before, after, expected):
    """Every output view within the case's tolerance; its buffer's other bytes untouched."""
    for entry in case["operands"]:
        name = entry["name"]
        if name not in expected:
            continue
        outside = np.ones(entry["buffer"], dtype=bool)
        view_of(outside, entry)[...] = False
        bits = f"u{before[name].itemsize}"  # compare bits: the poison is NaN
        assert np.array_equal(after[name][outside].view(bits), before[name][outside].view(bits)), \
            f"{case['name']}: wrote {name} outside its view"
        actual = decode(view_of(after[name], entry), entry["dtype"])
        if name == "argmax_ids":  # each group's largest stored value and its first column, exactly
            out, values = (next(e for e in case["operands"] if e["name"] == n) for n in ("out", "argmax_values"))
            want_values, want_ids = group_argmax(decode(view_of(after["out"], out), out["dtype"]))
            assert np.array_equal(decode(view_of(after["argmax_values"], values), "float32"), want_values), \
                f"{case['name']}: argmax_values differ from the maxima of the kernel's own out"
            assert np.array_equal(actual, want_ids), f"{case['name']}: argmax_ids are not each group's first maximum"
            continue
        copied = name == "v_cache" or (name == "k_cache" and not case["constants"].get("rope"))
        if copied:  # a copy in the same dtype: bit exact (rotated keys are computed: within tolerance)
            mismatched = np.argwhere(actual != expected[name])
            assert mismatched.size == 0, f"{case['name']}: {name} differs at [b, h, pos, d] = {mismatched[:4].tolist()}"
            continue
        unspecified = np.isnan(expected[name])  # e.g. LayerNorm statistics' unused groups
        scale = max(float(np.abs(np.where(unspecified, 0.0, expected[name])).max()), 1e-6)
        difference = np.where(unspecified, 0.0, np.abs(actual - expected[name]))
        error = float(np.nan_to_num(difference, nan=np.inf).max()) / scale
        assert error < case["tolerance"], f"{case['name']}: {name} rel err {error:.3g} >= {case['tolerance']}"


def pack_args(case, device_buffers):
    """Kernel arguments: per array (pointer u64, shape int32 x ndim, stride int32 x ndim)."""
    args = []
    for entry in case["operands"]:
        pointer = device_buffers[entry["name"]].data.ptr + entry["offset"] * ITEMSIZE[entry["dtype"]]
        args.append(np.uint64(pointer))
        args.extend(np.int32(n) for n in entry["shape"])
        args.extend(np.int32(s) for s in entry["strides"])
    return tuple(args)


@pytest.mark.parametrize("case", STANDALONE_CASES, ids=[c["name"] if c else "no-cubins" for c in STANDALONE_CASES])
def test_standalone_kernel(case):
    if case is None:
        pytest.skip("set CGC_GPU_CUBINS to a folder written by tests/gpu/export_test_cubins.py")
    sm = int(cupy.cuda.Device().compute_capability)
    if sm != case["sm"]:
        pytest.skip(f"cubins are for sm_{case['sm']}, this GPU is sm_{sm}")
    rng = np.random.default_rng(zlib.crc32(case["name"].encode()))
    before = make_buffers(case, rng)
    expected = reference_outputs(case, before)
    device = {name: cupy.asarray(buffer) for name, buffer in before.items()}
    module = cupy.cuda.function.Module()
    with open(os.path.join(CUBIN_DIR, case["cubin"]), "rb") as handle:
        module.load(handle.read())
    function = module.get_function(case["symbol"])
    function(tuple(case["grid"]), (case["block"], 1, 1), pack_args(case, device))
    cupy.cuda.runtime.deviceSynchronize()
    after = {name: buffer.get() for name, buffer in device.items()}
    check_outputs(case, before, after, expected)
