"""Read and write the safetensors format (header JSON + raw little-endian data), bfloat16 included.

Our own small reader because safetensors' NumPy binding cannot return bfloat16 tensors; the
format is an 8-byte header length, a JSON header {name: {dtype, shape, data_offsets}}, then data.
"""

import json
import struct

import numpy as np

_TAGS = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "I64": "int64",
         "F64": "float64", "U8": "uint8", "BOOL": "bool", "I8": "int8", "I16": "int16"}
_NUMPY = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int32": np.int32,
          "int64": np.int64, "float64": np.float64, "uint8": np.uint8, "bool": np.bool_, "int8": np.int8,
          "int16": np.int16}
_TAG_OF = {name: tag for tag, name in _TAGS.items()}


class SafetensorsFormatError(ValueError):
    """The file is not valid safetensors (message says why)."""


class SafetensorsFile:
    """Lazily readable tensors of one .safetensors file (memory-mapped)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as handle:
            raw_length = handle.read(8)
            if len(raw_length) != 8:
                raise SafetensorsFormatError(f"{path}: too short to be a safetensors file")
            (length,) = struct.unpack("<Q", raw_length)
            header_bytes = handle.read(length)
        if len(header_bytes) != length:
            raise SafetensorsFormatError(f"{path}: truncated header")
        try:
            header = json.loads(header_bytes)
        except ValueError:
            raise SafetensorsFormatError(f"{path}: header is not valid JSON") from None
        header.pop("__metadata__", None)
        self.data_start = 8 + length
        self.entries = header
        self._map = None

    def keys(self):
        """Tensor names in the file."""
        return list(self.entries)

    def dtype(self, name):
        """cgc dtype name of a tensor ("float32", "bfloat16", ...)."""
        tag = self.entries[name]["dtype"]
        if tag not in _TAGS:
            raise SafetensorsFormatError(f"{self.path}: tensor '{name}' has unsupported dtype {tag}")
        return _TAGS[tag]

    def shape(self, name):
        """Shape of a tensor as a tuple."""
        return tuple(self.entries[name]["shape"])

    def array(self, name):
        """The stored array (bfloat16 as uint16 bits), memory-mapped, read-only."""
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        start, end = self.entries[name]["data_offsets"]
        raw = self._map[self.data_start + start:self.data_start + end]
        return raw.view(_NUMPY[self.dtype(name)]).reshape(self.shape(name))


def write_safetensors(path_or_handle, specs, arrays):
    """Write tensors contiguously: `specs` maps name -> (dtype name, shape) in file order and
    `arrays` yields each one's storage array in that order (so they can be made one at a time).
    Returns the bytes written."""
    header, offset = {}, 0
    for name, (dtype, shape) in specs.items():
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_NUMPY[dtype]).itemsize
        header[name] = {"dtype": _TAG_OF[dtype], "shape": [int(d) for d in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    handle = open(path_or_handle, "wb") if isinstance(path_or_handle, str) else path_or_handle
    try:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for (name, (dtype, shape)), array in zip(specs.items(), arrays):
            if tuple(array.shape) != tuple(shape):
                raise ValueError(f"tensor '{name}' has shape {array.shape}, header says {tuple(shape)}")
            handle.write(memoryview(np.ascontiguousarray(array)).cast("B"))
    finally:
        if isinstance(path_or_handle, str):
            handle.close()
    return 8 + len(header_bytes) + offset
