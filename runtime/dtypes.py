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


def to_float32(array, dtype):
    """Values of a stored array as float32 (decoding bfloat16 bits)."""
    if dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def from_float32(values, dtype):
    """Encode float32 values for storage in `dtype` (bfloat16 rounds to nearest even)."""
    values = np.asarray(values, dtype=np.float32)
    if dtype == "bfloat16":
        bits = values.view(np.uint32)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        encoded = (rounded >> 16).astype(np.uint16)
        return np.where(np.isnan(values), np.uint16(0x7FC0), encoded)
    return values.astype(_STORAGE[dtype])
