"""Quantized weight formats of a plan (`cgc compile --quant`), and their dequantization.

A quantized linear stores its weight as codes plus float scales (and, for int4, minima), in the
weight's stored layout ([K, N] "in_out" or [N, K] "out_in"; K = in features, N = out features):
- int8: codes int8 in [-127, 127], one scale per output column: w = code * scale[n];
- fp8: codes float8 e4m3 (finite, |code| <= 448), one scale per output column, as int8;
- int4: codes 0..15 in groups of G consecutive K (`group_size`), two per byte along K (the even
  K in the low nibble), and per group and output column a scale and a minimum:
  w = code * scale[g, n] + min[g, n] (asymmetric; a GPTQ/AWQ zero point z is min = -z * scale).
  Scales and minima are [K / G, N] ([N, K / G] for out_in).
The plan's weights table marks each such tensor with {"quant": {"mode", "group_size", "part", "of"}}
(part: "codes", "scale" or "min"; of: the float weight it replaces).
"""

import numpy as np

MODES = ("int8", "int4", "fp8")
GROUP_SIZES = (32, 64, 128)
CODE_DTYPES = {"int8": "int8", "fp8": "float8_e4m3", "int4": "uint8"}
PARTS = {"int8": ("codes", "scale"), "fp8": ("codes", "scale"), "int4": ("codes", "scale", "min")}
FP8_MAX = 448.0


def _e4m3_values():
    """float32 value of every float8 e4m3fn byte (0x7F and 0xFF are NaN)."""
    codes = np.arange(256, dtype=np.uint32)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 3) & 0xF
    mantissa = (codes & 0x7).astype(np.float64)
    values = np.where(exponent == 0, mantissa / 8.0 * 2.0 ** -6, (1.0 + mantissa / 8.0) * 2.0 ** (exponent.astype(np.float64) - 7))
    values = sign * values
    values[(codes & 0x7F) == 0x7F] = np.nan
    return values.astype(np.float32)


E4M3 = _e4m3_values()
_POSITIVE = E4M3[:0x7F]  # codes 0x00..0x7E: 0 to 448, increasing


def e4m3_decode(bits):
    """float32 values of float8 e4m3fn bytes."""
    return E4M3[np.asarray(bits, dtype=np.uint8)]


def e4m3_encode(values):
    """float8 e4m3fn bytes of float32 values (round to nearest, ties to the even code; saturating
    at +-448; values must be finite)."""
    values = np.asarray(values, dtype=np.float32)
    magnitude = np.minimum(np.abs(values), FP8_MAX)
    upper = np.clip(np.searchsorted(_POSITIVE, magnitude, side="left"), 0, len(_POSITIVE) - 1)
    lower = np.maximum(upper - 1, 0)
    below, above = magnitude - _POSITIVE[lower], _POSITIVE[upper] - magnitude
    take_lower = (below < above) | ((below == above) & (lower % 2 == 0))
    codes = np.where(take_lower, lower, upper).astype(np.uint8)
    return np.where(np.signbit(values), codes | 0x80, codes).astype(np.uint8)


def k_axis(layout):
    """The axis of K (in features) of a weight stored in `layout`."""
    return 1 if layout == "out_in" else 0


def unpack_int4(packed, layout):
    """Codes 0..15 of packed int4 bytes: two per byte along K, the even K in the low nibble."""
    packed = np.asarray(packed, dtype=np.uint8)
    low, high = packed & 0xF, packed >> 4
    axis = k_axis(layout)
    codes = np.stack([low, high], axis=axis + 1)
    shape = list(packed.shape)
    shape[axis] *= 2
    return codes.reshape(shape)


def pack_int4(codes, layout):
    """Bytes of codes 0..15 (K even): the inverse of unpack_int4."""
    codes = np.asarray(codes, dtype=np.uint8)
    if k_axis(layout) == 0:
        return (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def dequantize(mode, layout, codes, scale, minimum=None, group_size=None):
    """float32 weight (stored layout) of its quantized parts: `codes` as stored (int8, e4m3 bytes
    or packed int4 bytes), `scale` (and `minimum`) as float32."""
    scale = np.asarray(scale, dtype=np.float32)
    axis = k_axis(layout)
    if mode in ("int8", "fp8"):
        values = e4m3_decode(codes) if mode == "fp8" else np.asarray(codes, dtype=np.float32)
        return values * (scale[None, :] if axis == 0 else scale[:, None])
    values = unpack_int4(codes, layout).astype(np.float32)
    repeat = lambda parts: np.repeat(np.asarray(parts, dtype=np.float32), group_size, axis=axis)  # noqa: E731
    return values * repeat(scale) + repeat(minimum)
