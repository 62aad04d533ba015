"""Make the stored weights: read checkpoint tensors (or seeded random init), apply recipes.

Recipes (see compiler/ir.py) transpose, concatenate or generate tensors at compile time, so the
runtime uploads bytes as they are. Rope tables follow Hugging Face's default and llama3 rope.
"""

import glob
import hashlib
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from compiler.errors import CheckpointError
from compiler.ir import recipe_sources
from runtime.dtypes import from_float32, to_float32
from runtime.safetensors_file import SafetensorsFile, SafetensorsFormatError


# cgc's own external weights files (compiler/plan_writer.py), which a plan may have beside a checkpoint
PLAN_WEIGHTS = re.compile(r".*\.[0-9a-f]{16}\.weights\.safetensors$")


def checkpoint_shards(directory):
    """The .safetensors files of a checkpoint, chosen as transformers chooses them: the shards its
    model.safetensors.index.json names, else model.safetensors, else every .safetensors file but
    the external weights of cgc plans compiled into the same directory."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index, encoding="utf-8") as stream:
                weight_map = json.load(stream)["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index with a 'weight_map' ({exc})") from None
        if not all(isinstance(name, str) and os.path.basename(name) == name for name in names):
            raise CheckpointError(f"{index}: 'weight_map' must name shard files in the same directory")
        paths = [os.path.join(directory, name) for name in names]
        missing = [name for name, path in zip(names, paths) if not os.path.isfile(path)]
        if missing:
            raise CheckpointError(f"{index}: shard {missing[0]} is not in the directory")
        return paths
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    paths = sorted(path for path in glob.glob(os.path.join(glob.escape(directory), "*.safetensors"))
                   if not PLAN_WEIGHTS.match(os.path.basename(path)))
    if not paths:
        raise CheckpointError(f"{directory}: no .safetensors files in checkpoint directory")
    return paths


class CheckpointWeights:
    """Tensors of a Hugging Face checkpoint directory (one or many .safetensors files)."""

    # Buffers some checkpoints store beside the weights; they are not parameters of the model.
    IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")

    def __init__(self, directory):
        from compiler.prequantized import read_quantization_config
        self.directory = directory
        self.quantization = None  # a pre-quantized checkpoint's QuantizationConfig (compiler/prequantized.py)
        if not os.path.isdir(directory):
            raise CheckpointError(f"{directory}: --weights expects a checkpoint directory (config.json + *.safetensors)")
        paths = checkpoint_shards(directory)
        self.files = {}
        for path in paths:
            try:
                handle = SafetensorsFile(path)
            except SafetensorsFormatError as exc:
                raise CheckpointError(str(exc)) from None
            for key in handle.keys():
                if key in self.files:
                    raise CheckpointError(f"{path}: tensor '{key}' is also in {self.files[key].path} "
                                          f"(a tensor must be in exactly one shard)")
                self.files[key] = handle
        self.quantization = read_quantization_config(directory)

    def quantized_prefix(self, name):
        """The prefix of `name` ("<prefix>.weight") when the checkpoint stores it pre-quantized."""
        prefix = name.removesuffix(".weight")
        if self.quantization is None or prefix == name:
            return None
        return next((p for p in (prefix, prefix.removeprefix("transformer."), "transformer." + prefix)
                     if p + ".qweight" in self.files), None)

    def quantized_parts(self, name, shape):
        """{codes, scale, min} ([N, K], [N, K/G], [N, K/G]) of the pre-quantized linear weight `name`
        of HF shape `shape`, or None when the checkpoint stores it as floats."""
        from compiler.prequantized import linear_parts
        prefix = self.quantized_prefix(name)
        if prefix is None:
            return None
        return linear_parts(self.quantization, _Tensors(self), prefix, tuple(shape))

    def _lookup(self, name):
        # GPT-2 checkpoints saved from GPT2Model lack the "transformer." prefix.
        for candidate in (name, name.removeprefix("transformer."), "transformer." + name):
            if candidate in self.files:
                return candidate
        return None

    def check_names(self, names):
        """Raise CheckpointError unless every tensor of `names` {name: shape} is in the checkpoint
        with that shape, and the checkpoint holds no other tensor than known buffers (a tensor
        left over means the graph and the checkpoint disagree, e.g. on the number of layers)."""
        used = set()
        for name, shape in names.items():
            prefix = self.quantized_prefix(name)
            if prefix is not None:  # qweight, qzeros, scales (, g_idx): checked as they are read
                used.update(key for key in (f"{prefix}.{part}" for part in ("qweight", "qzeros", "scales", "g_idx"))
                            if key in self.files)
                continue
            key = self._lookup(name)
            if key is None:
                raise CheckpointError(f"{self.directory}: checkpoint has no tensor '{name}' (expected shape {list(shape)})")
            self._check_shape(key, shape)
            used.add(key)
        extra = [key for key in self.files if key not in used and not key.endswith(self.IGNORED_SUFFIXES)
                 and key != "lm_head.weight"]
        if extra:
            raise CheckpointError(f"{self.files[extra[0]].path}: tensor '{extra[0]}' is not used by the graph "
                                  f"({len(extra)} unused tensors); does the config match the checkpoint?")

    def _check_shape(self, key, shape):
        handle = self.files[key]
        actual = handle.shape(key)
        if tuple(actual) != tuple(shape):
            raise CheckpointError(f"{handle.path}: tensor '{key}' has shape {list(actual)}, expected {list(shape)}")

    def get(self, name, shape):
        """The tensor `name` as float32, checked against `shape` and for NaN / Inf values (a
        pre-quantized linear weight dequantized)."""
        parts = self.quantized_parts(name, shape)
        if parts is not None:
            from runtime.quant import dequantize, pack_int4
            return dequantize("int4", "out_in", pack_int4(parts["codes"], "out_in"), parts["scale"], parts["min"],
                              self.quantization.group_size)
        key = self._lookup(name)
        if key is None:
            raise CheckpointError(f"{self.directory}: checkpoint has no tensor '{name}' (expected shape {list(shape)})")
        self._check_shape(key, shape)
        handle = self.files[key]
        try:
            dtype = handle.dtype(key)
        except SafetensorsFormatError as exc:
            raise CheckpointError(str(exc)) from None
        if dtype not in ("float32", "float16", "bfloat16", "float64"):
            raise CheckpointError(f"{handle.path}: tensor '{key}' has dtype {dtype}, expected a float type")
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf, refused below
            values = to_float32(handle.array(key), dtype) if dtype != "float64" else handle.array(key).astype(np.float32)
        if not np.isfinite(values).all():
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise CheckpointError(f"{handle.path}: tensor '{key}' has {bad} NaN or Inf values (expected finite weights)")
        return values


class _Tensors:
    """Stored arrays of a checkpoint by name (integer and float), for compiler/prequantized.py."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint

    def __contains__(self, name):
        return name in self.checkpoint.files

    def __call__(self, name):
        handle = self.checkpoint.files.get(name)
        if handle is None:
            raise CheckpointError(f"{self.checkpoint.directory}: pre-quantized checkpoint has no tensor '{name}'")
        try:
            dtype = handle.dtype(name)
        except SafetensorsFormatError as exc:
            raise CheckpointError(str(exc)) from None
        array = handle.array(name)
        return to_float32(array, dtype) if dtype in ("float16", "bfloat16") else array


def checkpoint_names(weights, names):
    """{checkpoint tensor name: shape} of every ("checkpoint", name) recipe the weights `names`
    are made from."""
    found, pending = {}, list(names)
    while pending:
        weight = weights[pending.pop()]
        if weight.recipe[0] == "checkpoint":
            found[weight.recipe[1]] = weight.shape
        else:
            pending.extend(recipe_sources(weight.recipe))
    return found


RANDOM_BLOCK = 1 << 24  # elements per independently seeded block of a large random tensor


class RandomWeights:
    """Seeded random init at realistic scale; each tensor depends only on (seed, name). Tensors
    above RANDOM_BLOCK elements draw each block from its own stream, on every core, in place."""

    def __init__(self, seed=0):
        self.seed = seed

    def get(self, name, shape, init="normal"):
        """A float32 tensor: N(0, 0.02) weights, 1 + N(0, 0.05) norm scales, N(0, 0.02) biases."""
        digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
        seed = int.from_bytes(digest[:8], "little")
        size = math.prod(shape)
        if size <= RANDOM_BLOCK:
            values = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        else:
            values = np.empty(size, dtype=np.float32)

            def draw(start):  # numpy releases the GIL while it fills
                block = values[start:start + RANDOM_BLOCK]
                np.random.default_rng([seed, start // RANDOM_BLOCK]).standard_normal(out=block, dtype=np.float32)

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                list(pool.map(draw, range(0, size, RANDOM_BLOCK)))
            values = values.reshape(shape)
        if init == "norm":
            values *= 0.05
            values += 1.0
        else:
            values *= 0.02
        return values


def build_weight(weights, name, source):
    """The float32 array of weight `name`, made by its recipe (sources rebuilt, not cached,
    so that only one stored tensor and its parts are in memory at a time). A source's `get`
    returns a new array, so recipes scale it in place; a transpose is a view (encode() lays it
    out), which keeps a 7B model's largest tensor to one float32 copy."""
    weight = weights[name]
    kind = weight.recipe[0]
    if kind == "checkpoint":
        if isinstance(source, RandomWeights):
            return source.get(weight.recipe[1], weight.shape, weight.init)
        return source.get(weight.recipe[1], weight.shape)
    if kind == "transpose":
        return build_weight(weights, weight.recipe[1], source).T
    if kind == "concat":
        parts = [build_weight(weights, part, source) for part in weight.recipe[1]]
        return np.concatenate(parts, axis=weight.recipe[2])
    if kind == "fold_scale":
        _, base, scale, center = weight.recipe
        folded = build_weight(weights, base, source)
        if scale is not None:
            folded *= build_weight(weights, scale, source)[:, None]
        if center:
            folded -= folded.mean(axis=0, keepdims=True)
        return folded
    if kind == "fold_bias":
        _, base, shift, bias = weight.recipe
        folded = build_weight(weights, shift, source) @ build_weight(weights, base, source)
        return folded + build_weight(weights, bias, source) if bias is not None else folded
    if kind in ("rope_cos", "rope_sin"):
        return rope_table(*weight.recipe[1:])[0 if kind == "rope_cos" else 1]
    if kind == "quantize":
        return quantized_parts(weights, weight.recipe, source)[weight.recipe[5]]
    raise CheckpointError(f"weight '{name}': unknown recipe {kind!r}")


def quantized_parts(weights, recipe, source):
    """{part: array} of a ("quantize", ...) recipe's weight: codes in storage form, scales as float32.
    A weight made only of a pre-quantized checkpoint's linears keeps their codes and scales."""
    from compiler.quantize import quantize
    from runtime.quant import pack_int4
    _, base, mode, group_size, layout, _, scale_dtype = recipe
    if mode == "int4" and getattr(source, "quantization", None) is not None:
        parts = _prequantized(weights, base, source)
        if parts is not None:
            axis = 1 if layout == "out_in" else 0
            if parts["axis"] != axis:
                parts = {key: value.T for key, value in parts.items() if key != "axis"}
            stored = {key: to_float32(from_float32(parts[key], scale_dtype), scale_dtype) for key in ("scale", "min")}
            if not all(np.array_equal(stored[key], parts[key]) for key in stored):
                raise CheckpointError(f"weight '{base}': the checkpoint's scales do not fit {scale_dtype} exactly")
            return {"codes": pack_int4(parts["codes"], layout), **stored}
    return quantize(mode, layout, build_weight(weights, base, source), group_size, scale_dtype)


def _prequantized(weights, name, source):
    """{codes, scale, min (unpacked, float32), axis: the K axis} of weight `name` built from a
    pre-quantized checkpoint's parts through transposes and concatenations, or None when any part
    of it is stored as floats."""
    weight = weights[name]
    kind = weight.recipe[0]
    if kind == "checkpoint":
        parts = source.quantized_parts(weight.recipe[1], weight.shape)
        return None if parts is None else {**parts, "axis": 1}
    if kind == "transpose":
        parts = _prequantized(weights, weight.recipe[1], source)
        return None if parts is None else {**{k: v.T for k, v in parts.items() if k != "axis"}, "axis": 1 - parts["axis"]}
    if kind == "concat":
        pieces = [_prequantized(weights, part, source) for part in weight.recipe[1]]
        axis = weight.recipe[2]
        if any(piece is None for piece in pieces) or any(piece["axis"] == axis for piece in pieces):
            return None  # a float part, or pieces joined along K: quantized anew
        return {**{key: np.concatenate([piece[key] for piece in pieces], axis=axis) for key in ("codes", "scale", "min")},
                "axis": pieces[0]["axis"]}
    return None


def materialize(weights, source, names=None):
    """Return {name: float32 array} for `names` (default: all of `weights`), applying recipes."""
    return {name: build_weight(weights, name, source) for name in (names if names is not None else weights)}


def encode(values, dtype):
    """Storage bytes of float32 `values` in `dtype` (bfloat16 as uint16 bits)."""
    return from_float32(values, dtype)


def rope_inv_freq(head_dim, theta, scaling):
    """Inverse frequencies of RoPE, with Hugging Face's 'llama3' scaling when asked."""
    if scaling is not None and not isinstance(scaling, dict):
        raise CheckpointError(f"rope scaling must be a mapping (rope_scaling / rope_parameters), got {str(scaling)[:60]}")
    scaling = dict(scaling or {})
    for key in ("rope_theta", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
        value = scaling.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise CheckpointError(f"rope scaling '{key}' must be a positive number, got {str(value)[:60]}")
    theta = float(scaling.get("rope_theta", theta))
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return inv_freq
    if rope_type != "llama3":
        raise CheckpointError(f"unsupported rope_type '{rope_type}' (supported: default, llama3)")
    if "factor" not in scaling:
        raise CheckpointError("llama3 rope scaling needs a 'factor'")
    factor = scaling["factor"]
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    if not high > low:
        raise CheckpointError(f"llama3 rope scaling needs high_freq_factor > low_freq_factor (got {high}, {low})")
    original = scaling.get("original_max_position_embeddings", 8192)
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return np.where(medium, smoothed, scaled)


def rope_table(head_dim, theta, scaling, positions):
    """(cos, sin) float32 tables of shape [positions, head_dim / 2]."""
    inv_freq = rope_inv_freq(head_dim, theta, scaling)
    angles = np.outer(np.arange(positions, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
