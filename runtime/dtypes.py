"""Storage dtypes of plans and their NumPy views; bfloat16 is kept as raw uint16 bits."""

import numpy as np

_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4}
_STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int32": np.int32}


def itemsize(dtype):
    """Bytes per element of a plan dtype name."""
    return _ITEMSIZE[dtype]


def storage_dtype(dtype):
    """The NumPy dtype holding a plan dtype's bits (uint16 for bfloat16)."""
    return _STORAGE[dtype]


_CHUNK_ELEMENTS = 1 << 22  # encode in blocks of leading-axis rows: 7B-model weights need no full-size temporaries


def to_float32(array, dtype):
    """Values of a stored array as float32 (decoding bfloat16 bits)."""
    if dtype == "bfloat16":
        bits = array.astype(np.uint32)
        bits <<= 16
        return bits.view(np.float32)
    return array.astype(np.float32)


def from_float32(values, dtype):
    """Encode float32 values for storage in `dtype` (bfloat16 rounds to nearest even); any
    layout in, a C-contiguous array out, converted in blocks of rows."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 0:
        return _encode_block(values.reshape(1), dtype).reshape(())
    if values.size <= _CHUNK_ELEMENTS:
        return _encode_block(values, dtype)
    out = np.empty(values.shape, dtype=_STORAGE[dtype])
    rows = max(1, _CHUNK_ELEMENTS // max(1, values[0].size))
    for start in range(0, values.shape[0], rows):
        out[start:start + rows] = _encode_block(values[start:start + rows], dtype)
    return out


def _encode_block(values, dtype):
    if dtype == "bfloat16":  # round to nearest even: add 0x7FFF plus the kept half's lowest bit
        bits = np.ascontiguousarray(values).view(np.uint32)
        rounded = bits >> 16
        rounded &= 1
        rounded += 0x7FFF
        rounded += bits
        rounded >>= 16
        encoded = rounded.astype(np.uint16)
        nan = np.isnan(values)
        if nan.any():
            encoded[nan] = 0x7FC0
        return encoded
    return np.ascontiguousarray(values, dtype=_STORAGE[dtype])
