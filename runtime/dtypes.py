"""Storage dtypes of plans and their NumPy views; bfloat16 is kept as raw uint16 bits, float8
e4m3 as raw bytes. int8, uint8 and float8_e4m3 hold quantized weights (runtime/quant.py)."""

import numpy as np

_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int8": 1, "uint8": 1, "float8_e4m3": 1}
_STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int32": np.int32,
            "int8": np.int8, "uint8": np.uint8, "float8_e4m3": np.uint8}
QUANTIZED = ("int8", "uint8", "float8_e4m3")  # stored as given: codes come ready-made from the quantizer


def itemsize(dtype):
    """Bytes per element of a plan dtype name."""
    return _ITEMSIZE[dtype]


def storage_dtype(dtype):
    """The NumPy dtype holding a plan dtype's bits (uint16 for bfloat16)."""
    return _STORAGE[dtype]


_CHUNK_ELEMENTS = 1 << 20  # encode in blocks of this many elements: no full-size temporaries for 7B weights
_TILE = 512  # square tiles of a transposed view: each reads whole cache lines of its source


def to_float32(array, dtype):
    """Values of a stored array as float32 (decoding bfloat16 bits)."""
    if dtype == "bfloat16":
        bits = array.astype(np.uint32)
        bits <<= 16
        return bits.view(np.float32)
    if dtype == "float8_e4m3":
        from runtime.quant import e4m3_decode
        return e4m3_decode(array)
    return array.astype(np.float32)


def from_float32(values, dtype):
    """Encode float32 values for storage in `dtype` (bfloat16 rounds to nearest even); any
    layout in, a C-contiguous array out. Large arrays convert in blocks through one reused
    scratch buffer, a transposed view in square tiles read along its source's rows."""
    if dtype in QUANTIZED:
        values = np.asarray(values)
        if values.dtype != _STORAGE[dtype]:
            raise ValueError(f"{dtype} weights are stored as quantized codes ({np.dtype(_STORAGE[dtype])}), "
                             f"got {values.dtype}")
        return np.ascontiguousarray(values)
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 0:
        return from_float32(values.reshape(1), dtype).reshape(())
    out = np.empty(values.shape, dtype=_STORAGE[dtype])
    scratch = np.empty(min(values.size, max(_CHUNK_ELEMENTS, _TILE * _TILE, values[0].size)), dtype=np.uint32)
    if values.ndim == 2 and not values.flags.c_contiguous and values.T.flags.c_contiguous:
        for row in range(0, values.shape[0], _TILE):
            for column in range(0, values.shape[1], _TILE):
                tile = (slice(row, row + _TILE), slice(column, column + _TILE))
                _encode_into(out[tile], values[tile], dtype, scratch)
        return out
    rows = max(1, _CHUNK_ELEMENTS // max(1, values[0].size))
    for start in range(0, values.shape[0], rows):
        _encode_into(out[start:start + rows], values[start:start + rows], dtype, scratch)
    return out


def _encode_into(target, values, dtype, scratch):
    """Write `values` encoded into `target` (same shape), using `scratch` for bfloat16."""
    if dtype != "bfloat16":
        target[...] = values
        return
    block = np.ascontiguousarray(values)
    bits = block.reshape(-1).view(np.uint32)
    rounded = scratch[:bits.size]  # round to nearest even: add 0x7FFF plus the kept half's lowest bit
    np.right_shift(bits, 16, out=rounded)
    rounded &= 1
    rounded += 0x7FFF
    rounded += bits
    rounded >>= 16
    target[...] = rounded.reshape(block.shape)
    nan = np.isnan(block)
    if nan.any():
        target[nan] = 0x7FC0
