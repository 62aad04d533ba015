"""Pre-quantized Hugging Face checkpoints: 4-bit GPTQ and AWQ, read without re-quantizing.

A checkpoint whose config.json has a `quantization_config` stores each quantized linear as
`<prefix>.qweight`, `.qzeros`, `.scales` (and GPTQ's `.g_idx`) instead of `<prefix>.weight`:
- GPTQ (`quant_method: gptq`): qweight int32 [K/8, N], eight codes per word along K (code i of a
  word in bits 4i..4i+3); qzeros int32 [K/G, N/8], eight zero points per word along N; scales
  float16 [K/G, N]; g_idx int32 [K], each input feature's group. With `checkpoint_format: gptq`
  (v1) the stored zero points are one less than the ones used (w = (q - (z + 1)) * s); `gptq_v2`
  stores them as used. desc_act / g_idx other than k // G (act-order groups) needs the input
  features permuted, which cgc's formats do not express: refused, naming the field.
- AWQ (`quant_method: awq`, `version: gemm`): qweight int32 [K, N/8] and qzeros int32 [K/G, N/8],
  eight codes per word along N in the order 0, 2, 4, 6, 1, 3, 5, 7; scales float16 [K/G, N];
  w = (q - z) * s.
Each becomes cgc's int4 format (runtime/quant.py) exactly: codes as stored, scale as stored,
min = -z * scale. Unsupported variants get a CheckpointError naming the field.
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from compiler.errors import CheckpointError
from runtime.quant import GROUP_SIZES

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # the code of column 8c + AWQ_ORDER[i] sits in bits 4i of word c
PARTS = ("qweight", "qzeros", "scales")


@dataclass(frozen=True)
class QuantizationConfig:
    """What a checkpoint's quantization_config says, checked: method "gptq" or "awq", groups of
    `group_size` input features, GPTQ v1 zero points (`zero_offset` 1) or not (0)."""

    method: str
    group_size: int
    zero_offset: int


def _shown(value):
    """A config value as the error shows it (strings quoted, at most 40 characters)."""
    return repr(value)[:40]


def read_quantization_config(directory):
    """The checked QuantizationConfig of checkpoint `directory`, or None when it has none."""
    path = os.path.join(directory, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None  # the graph loader reports unreadable configs
    if not isinstance(config, dict) or config.get("quantization_config") is None:
        return None
    fields = config["quantization_config"]
    where = f"{path}: quantization_config"
    if not isinstance(fields, dict):
        raise CheckpointError(f"{where} must be a JSON object")
    method = fields.get("quant_method")
    if method not in ("gptq", "awq"):
        raise CheckpointError(f"{where}.quant_method {_shown(method)} is not supported (supported: gptq, awq)")
    bits = fields.get("bits", fields.get("w_bit"))
    if bits != 4:
        raise CheckpointError(f"{where}.bits {_shown(bits)} is not supported (cgc reads 4-bit checkpoints)")
    group_size = fields.get("group_size", fields.get("q_group_size"))
    if group_size not in GROUP_SIZES:
        raise CheckpointError(f"{where}.group_size {_shown(group_size)} is not supported "
                              f"(supported: {', '.join(map(str, GROUP_SIZES))})")
    if method == "awq":
        version = str(fields.get("version", "gemm")).lower()
        if version != "gemm":
            raise CheckpointError(f"{where}.version {_shown(version)} is not supported (supported: gemm)")
        if fields.get("zero_point", True) is not True:
            raise CheckpointError(f"{where}.zero_point false is not supported (cgc reads AWQ with zero points)")
        return QuantizationConfig("awq", group_size, 0)
    checkpoint_format = fields.get("checkpoint_format", "gptq")
    if checkpoint_format not in ("gptq", "gptq_v2"):
        raise CheckpointError(f"{where}.checkpoint_format {_shown(checkpoint_format)} is not supported "
                              f"(supported: gptq, gptq_v2)")
    return QuantizationConfig("gptq", group_size, 1 if checkpoint_format == "gptq" else 0)


def _nibbles(words, axis):
    """Codes 0..15 of int32 `words`, eight per word, code i from bits 4i, laid out along `axis`."""
    words = np.asarray(words).astype(np.uint32)
    codes = np.stack([(words >> (4 * i)) & 0xF for i in range(8)], axis=axis + 1).astype(np.uint8)
    shape = list(words.shape)
    shape[axis] *= 8
    return codes.reshape(shape)


def _awq_columns(codes):
    """Undo AWQ's order of the eight columns in each word."""
    columns = codes.shape[-1]
    order = np.arange(columns).reshape(-1, 8)[:, np.argsort(AWQ_ORDER)].reshape(-1)
    return codes[..., order]


def linear_parts(config, tensors, prefix, shape):
    """{codes [N, K] uint8, scale [N, K/G] float32, min [N, K/G] float32} of the pre-quantized
    linear `prefix` (HF weight shape `shape` = [N, K]); `tensors(name)` returns a stored array."""
    features, depth = shape
    group = config.group_size
    if depth % group:
        raise CheckpointError(f"{prefix}: {depth} input features are not a multiple of group_size {group}")
    qweight, qzeros, scales = (tensors(f"{prefix}.{part}") for part in PARTS)
    expected = {"gptq": {"qweight": (depth // 8, features), "qzeros": (depth // group, features // 8)},
                "awq": {"qweight": (depth, features // 8), "qzeros": (depth // group, features // 8)}}[config.method]
    expected["scales"] = (depth // group, features)
    for part, array in zip(PARTS, (qweight, qzeros, scales)):
        integral = np.issubdtype(np.asarray(array).dtype, np.integer)
        if (part != "scales") != integral or (integral and np.asarray(array).dtype.itemsize != 4):
            raise CheckpointError(f"{prefix}.{part} has dtype {np.asarray(array).dtype}, expected "
                                  f"{'a float type' if part == 'scales' else 'int32 (eight 4-bit codes a word)'}")
        if tuple(array.shape) != expected[part]:
            raise CheckpointError(f"{prefix}.{part} has shape {list(array.shape)}, expected {list(expected[part])} "
                                  f"for a [{features}, {depth}] linear in groups of {group}")
    if config.method == "gptq":
        codes = _nibbles(qweight, 0)            # [K, N]
        zeros = _nibbles(qzeros, 1)             # [K/G, N]
        groups = tensors(f"{prefix}.g_idx") if f"{prefix}.g_idx" in tensors else None
        if groups is not None and not np.array_equal(np.asarray(groups).reshape(-1), np.arange(depth) // group):
            raise CheckpointError(f"{prefix}.g_idx assigns input features to groups out of order (desc_act / "
                                  f"act-order); cgc reads GPTQ checkpoints whose g_idx is k // group_size")
    else:
        codes = _awq_columns(_nibbles(qweight, 1))
        zeros = _awq_columns(_nibbles(qzeros, 1))
    zeros = zeros.astype(np.int32) + config.zero_offset  # v1: a stored 15 means 16, as GPTQ's kernels read it
    scale = np.asarray(scales, dtype=np.float32)
    if not np.isfinite(scale).all():
        raise CheckpointError(f"{prefix}.scales has NaN or Inf values")
    return {"codes": np.ascontiguousarray(codes.T), "scale": np.ascontiguousarray(scale.T),
            "min": np.ascontiguousarray((-zeros * scale).T)}
