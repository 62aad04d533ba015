"""Quantize a float32 weight into a plan's quantized format (runtime/quant.py documents them).

Scales and minima are rounded to their stored dtype before the codes are chosen, so the codes
are the nearest ones for the values the kernels will multiply by.
"""

import numpy as np

from runtime.dtypes import from_float32, to_float32
from runtime.quant import FP8_MAX, e4m3_encode, k_axis, pack_int4

BLOCK_COLUMNS = 4096  # output columns quantized at once: float32 temporaries stay small for 7B weights


def _stored(values, dtype):
    """`values` rounded to `dtype` and back to float32."""
    return to_float32(from_float32(values, dtype), dtype)


def quantize(mode, layout, weight, group_size=None, scale_dtype="float32"):
    """{part: array} of float32 `weight` (stored layout): "codes" in storage form (int8, e4m3 bytes
    or packed int4 bytes), "scale" (and for int4 "min") as float32 values of `scale_dtype`."""
    weight = np.asarray(weight, dtype=np.float32)
    if k_axis(layout) == 1:  # [N, K]: quantize the transpose, lay the parts out as [N, ...]
        parts = quantize(mode, "in_out", weight.T, group_size, scale_dtype)
        codes = parts["codes"]
        if mode == "int4":
            codes = pack_int4(_unpacked_in_out(codes).T, "out_in")
        else:
            codes = np.ascontiguousarray(codes.T)
        return {**{name: np.ascontiguousarray(part.T) for name, part in parts.items() if name != "codes"},
                "codes": codes}
    if mode in ("int8", "fp8"):
        return _per_column(mode, weight, scale_dtype)
    if mode == "int4":
        return _groups(weight, group_size, scale_dtype)
    raise ValueError(f"unknown quantization mode {mode!r}")


def _unpacked_in_out(packed):
    from runtime.quant import unpack_int4
    return unpack_int4(packed, "in_out")


def _per_column(mode, weight, scale_dtype):
    """One scale per output column: the column's largest magnitude maps to 127 (int8) or 448 (fp8)."""
    top = 127.0 if mode == "int8" else FP8_MAX
    largest = np.abs(weight).max(axis=0)
    scale = _stored(np.where(largest > 0, largest / top, 1.0), scale_dtype)
    codes = np.empty(weight.shape, dtype=np.int8 if mode == "int8" else np.uint8)
    for start in range(0, weight.shape[1], BLOCK_COLUMNS):
        block = slice(start, start + BLOCK_COLUMNS)
        scaled = weight[:, block] / scale[block]
        codes[:, block] = np.clip(np.rint(scaled), -127, 127) if mode == "int8" else e4m3_encode(scaled)
    return {"codes": codes, "scale": scale}


def _groups(weight, group_size, scale_dtype):
    """Groups of `group_size` rows (K) per column: the group's range [min, max] in 15 steps."""
    rows, columns = weight.shape
    groups = rows // group_size
    grouped = weight.reshape(groups, group_size, columns)
    low, high = grouped.min(axis=1), grouped.max(axis=1)
    scale = _stored(np.where(high > low, (high - low) / 15.0, 1.0), scale_dtype)
    minimum = _stored(low, scale_dtype)
    codes = np.empty(weight.shape, dtype=np.uint8)
    for start in range(0, columns, BLOCK_COLUMNS):
        block = slice(start, start + BLOCK_COLUMNS)
        steps = (grouped[:, :, block] - minimum[:, None, block]) / scale[:, None, block]
        codes[:, block] = np.clip(np.rint(steps), 0, 15).reshape(rows, -1)
    return {"codes": pack_int4(codes, "in_out"), "scale": scale, "min": minimum}
