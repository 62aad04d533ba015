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
    or packed int4 bytes), "scale" (and for int4 "min") as float32 values of `scale_dtype`, laid
    out as runtime/quant.py says. Works in the stored layout, a block of output channels at a time."""
    weight = np.asarray(weight, dtype=np.float32)
    if mode in ("int8", "fp8"):
        return _per_column(mode, layout, weight, scale_dtype)
    if mode == "int4":
        return _groups(layout, weight, group_size, scale_dtype)
    raise ValueError(f"unknown quantization mode {mode!r}")


def _channel_blocks(layout, weight):
    """Index tuples of blocks of BLOCK_COLUMNS output channels of a weight stored in `layout`."""
    channels = weight.shape[1 - k_axis(layout)]
    for start in range(0, channels, BLOCK_COLUMNS):
        block = slice(start, start + BLOCK_COLUMNS)
        yield (slice(None), block) if k_axis(layout) == 0 else (block, slice(None))


def _per_column(mode, layout, weight, scale_dtype):
    """One scale per output channel: its largest magnitude maps to 127 (int8) or 448 (fp8)."""
    axis = k_axis(layout)
    top = 127.0 if mode == "int8" else FP8_MAX
    largest = np.empty(weight.shape[1 - axis], dtype=np.float32)
    for index in _channel_blocks(layout, weight):  # no full-size |weight| temporary (a 7B LM head's is 2 GB)
        largest[index[1 - axis]] = np.abs(weight[index]).max(axis=axis)
    scale = _stored(np.where(largest > 0, largest / top, 1.0), scale_dtype)
    codes = np.empty(weight.shape, dtype=np.int8 if mode == "int8" else np.uint8)
    for index in _channel_blocks(layout, weight):
        channel_scale = scale[index[1 - axis]]
        scaled = weight[index] / (channel_scale[None, :] if axis == 0 else channel_scale[:, None])
        codes[index] = np.clip(np.rint(scaled), -127, 127) if mode == "int8" else e4m3_encode(scaled)
    return {"codes": codes, "scale": scale}


def _groups(layout, weight, group_size, scale_dtype):
    """Groups of `group_size` consecutive K per output channel: the group's range [min, max] in 15 steps."""
    axis = k_axis(layout)
    rows, columns = weight.shape
    if axis == 0:  # [K, N] -> [K / G, G, N], reduced over G
        grouped, reduce = weight.reshape(rows // group_size, group_size, columns), 1
    else:          # [N, K] -> [N, K / G, G]
        grouped, reduce = weight.reshape(rows, columns // group_size, group_size), 2
    low, high = grouped.min(axis=reduce), grouped.max(axis=reduce)
    scale = _stored(np.where(high > low, (high - low) / 15.0, 1.0), scale_dtype)
    minimum = _stored(low, scale_dtype)
    codes = np.empty(weight.shape, dtype=np.uint8)
    for index in _channel_blocks(layout, weight):
        channel = index[1 - axis]
        if axis == 0:
            steps = (grouped[:, :, channel] - minimum[:, None, channel]) / scale[:, None, channel]
        else:
            steps = (grouped[channel] - minimum[channel, :, None]) / scale[channel, :, None]
        codes[index] = np.clip(np.rint(steps), 0, 15).reshape(codes[index].shape)
    return {"codes": pack_int4(codes, layout), "scale": scale, "min": minimum}
