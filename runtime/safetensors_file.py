"""Read .safetensors files through the `safetensors` package; write them in a stream.

Reading: `safetensors.safe_open` parses and checks the header (JSON, dtypes, shapes, offsets
inside the file, no overlaps) before we touch a byte. NumPy has no bfloat16, so the library
cannot hand one out as an array: for BF16 (and F8_E4M3) tensors only, we take the offsets from the header the
library has already accepted and memory-map the raw uint16 bits (runtime/dtypes.py decodes them).

Writing: the library's writer needs every tensor in memory at once, which a 7B-parameter compile
cannot afford, so `write_safetensors` streams tensors one at a time in the same layout; the
compiler re-opens each written file through the library before committing it.
"""

import json
import os
import struct

import numpy as np

_TAGS = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I32": "int32", "I64": "int64",
         "F64": "float64", "U8": "uint8", "BOOL": "bool", "I8": "int8", "I16": "int16",
         "F8_E4M3": "float8_e4m3"}
_NUMPY = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int32": np.int32,
          "int64": np.int64, "float64": np.float64, "uint8": np.uint8, "bool": np.bool_, "int8": np.int8,
          "int16": np.int16, "float8_e4m3": np.uint8}
_TAG_OF = {name: tag for tag, name in _TAGS.items()}
_RAW_BITS = ("bfloat16", "float8_e4m3")  # NumPy has no such dtype: memory-mapped as their bits


class SafetensorsFormatError(ValueError):
    """The file is not valid safetensors, or holds a dtype cgc cannot read (message says why)."""


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SafetensorsFile:
    """The tensors of one .safetensors file, opened and checked by the `safetensors` package."""

    def __init__(self, path):
        from safetensors import SafetensorError, safe_open
        self.path = path
        if not os.path.isfile(path):
            raise SafetensorsFormatError(f"{path}: not a regular file")
        try:
            self._handle = safe_open(path, framework="np")
            self._entries = {}
            for name in self._handle.keys():
                view = self._handle.get_slice(name)
                self._entries[name] = (view.get_dtype(), tuple(int(d) for d in view.get_shape()))
        except SafetensorError as exc:
            raise SafetensorsFormatError(f"{path}: not a valid safetensors file: {_first_line(exc)}") from None
        except OSError as exc:
            raise SafetensorsFormatError(f"{path}: cannot read: {exc.strerror or _first_line(exc)}") from None
        self._raw_offsets = None

    def keys(self):
        """Tensor names in the file."""
        return list(self._entries)

    def dtype(self, name):
        """cgc dtype name of a tensor ("float32", "bfloat16", ...)."""
        tag = self._entries[name][0]
        if tag not in _TAGS:
            raise SafetensorsFormatError(f"{self.path}: tensor '{name}' has unsupported dtype {tag} "
                                         f"(supported: {', '.join(sorted(_TAGS))})")
        return _TAGS[tag]

    def shape(self, name):
        """Shape of a tensor as a tuple."""
        return self._entries[name][1]

    def array(self, name):
        """The stored array (bfloat16 as uint16 bits, float8 e4m3 as bytes), read-only."""
        dtype = self.dtype(name)
        if dtype not in _RAW_BITS:
            array = self._handle.get_tensor(name)
            array.flags.writeable = False
            return array
        start, end = self._raw_offset(name)
        if start == end:
            return np.zeros(self.shape(name), dtype=_NUMPY[dtype])
        return np.memmap(self.path, dtype=_NUMPY[dtype], mode="r", offset=start,
                         shape=self.shape(name))

    def _raw_offset(self, name):
        """Absolute byte range of a tensor, from the header the library has already validated."""
        if self._raw_offsets is None:
            with open(self.path, "rb") as handle:
                raw, header = read_header(handle, self.path)
            self._raw_offsets = {key: (len(raw) + entry["data_offsets"][0], len(raw) + entry["data_offsets"][1])
                                  for key, entry in header.items()}
        return self._raw_offsets[name]


MAX_HEADER_BYTES = 100 << 20  # the library's own bound


def read_header(handle, path):
    """(the header's bytes with their length prefix, the header's tensor entries) of an open
    .safetensors file positioned at its start; SafetensorsFormatError names what is wrong."""
    raw_length = handle.read(8)
    if len(raw_length) != 8:
        raise SafetensorsFormatError(f"{path}: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", raw_length)
    if length > MAX_HEADER_BYTES:
        raise SafetensorsFormatError(f"{path}: header claims {length} bytes (at most {MAX_HEADER_BYTES})")
    header_bytes = handle.read(length)
    try:
        header = json.loads(header_bytes)
    except ValueError:
        raise SafetensorsFormatError(f"{path}: header is not valid JSON") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError(f"{path}: header is not a JSON object")
    header.pop("__metadata__", None)
    return raw_length + header_bytes, header


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
            handle.write(memoryview(np.ascontiguousarray(array, dtype=_NUMPY[dtype])).cast("B"))
    finally:
        if isinstance(path_or_handle, str):
            handle.close()
    return 8 + len(header_bytes) + offset
