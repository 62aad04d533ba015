"""Stream a plan's external weights file into the weights region in one sequential read.

The compiler writes the file's tensors back to back in the order of the plan's weights table, so
the loader reads it front to back once, in blocks of whole rows: each block is hashed (the sha256
the plan holds) on a second thread while it is copied to its place in the region, rows padded to
the region's row stride. Host memory stays at two blocks, whatever the model's size. A file that
does not match the plan (layout or hash) raises PlanError.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from runtime.dtypes import itemsize
from runtime.errors import PlanError
from runtime.safetensors_file import SafetensorsFormatError, read_header

BLOCK_BYTES = 1 << 26
_DTYPE_TAGS = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int32": "I32", "int8": "I8", "uint8": "U8",
               "float8_e4m3": "F8_E4M3"}


def external_weights_path(body):
    """Where the plan's external weights file lies: beside the plan."""
    return os.path.join(os.path.dirname(body.get("path", ".")), body["weights"]["file"])


def file_layout(path, handle, table):
    """The header bytes of the open weights file and, per table entry, its bytes in the file;
    raises PlanError unless the tensors are the table's, back to back, in its order."""
    try:
        raw, header = read_header(handle, path)
    except SafetensorsFormatError as exc:
        raise PlanError(f"weights file {exc}") from None
    offset, sizes = 0, []
    for entry in table:
        found = header.get(entry["name"])
        nbytes = int(np.prod(entry["shape"], dtype=np.int64)) * itemsize(entry["dtype"])
        expected = {"dtype": _DTYPE_TAGS.get(entry["dtype"]), "shape": list(entry["shape"]),
                    "data_offsets": [offset, offset + nbytes]}
        if found != expected:
            raise PlanError(f"{path}: tensor '{entry['name']}' is {found}, the plan expects {expected}; recompile")
        sizes.append(nbytes)
        offset += nbytes
    if len(header) != len(table):
        raise PlanError(f"{path}: weights file holds {len(header)} tensors, the plan {len(table)}; recompile")
    return raw, sizes


def stream_weights(body, copy, block_bytes=BLOCK_BYTES, buffers=None):
    """Read the plan's external weights file once and hand each block to
    `copy(region_offset, block, rows, row_bytes, stride_bytes)`: `rows` rows of `row_bytes` bytes
    each, to be placed `stride_bytes` apart from `region_offset` on. `buffers` are two writable
    uint8 arrays of `block_bytes` each (pinned memory on a GPU); the hash is checked at the end."""
    weights = body["weights"]
    path = external_weights_path(body)
    buffers = buffers or [np.empty(block_bytes, dtype=np.uint8) for _ in range(2)]
    digest = hashlib.sha256()
    if not os.path.isfile(path) or os.path.islink(path):  # never block on a FIFO or follow a link
        raise PlanError(f"{path}: the plan's weights file is missing or not a regular file")
    try:
        with open(path, "rb", buffering=0) as handle, ThreadPoolExecutor(max_workers=1) as hasher:
            header, sizes = file_layout(path, handle, weights["table"])
            digest.update(header)
            pending, turn = None, 0
            for entry, nbytes in zip(weights["table"], sizes):
                row_bytes, stride_bytes = _row_geometry(entry)
                if row_bytes > block_bytes:
                    raise PlanError(f"{path}: tensor '{entry['name']}' has rows of {row_bytes} bytes, more than the "
                                    f"loader's {block_bytes}-byte blocks")
                rows_per_block = block_bytes // row_bytes
                for first_row in range(0, nbytes // row_bytes, rows_per_block):
                    rows = min(rows_per_block, nbytes // row_bytes - first_row)
                    view = memoryview(buffers[turn % 2])[:rows * row_bytes]
                    if handle.readinto(view) != len(view):
                        raise PlanError(f"{path}: weights file is truncated; recompile")
                    if pending is not None:
                        pending.result()
                    pending = hasher.submit(digest.update, view)
                    copy(entry["offset"] + first_row * stride_bytes, view, rows, row_bytes, stride_bytes)
                    turn += 1
            if pending is not None:
                pending.result()
            if handle.read(1):
                raise PlanError(f"{path}: weights file has bytes after its last tensor; recompile")
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan's weights file: {exc.strerror}") from None
    if digest.hexdigest() != weights["sha256"]:
        raise PlanError(f"{path}: weights file does not match the plan (sha256 mismatch); recompile")


def _row_geometry(entry):
    """(bytes of one stored row, bytes between rows in the region) of a table entry; a tensor
    stored unpadded streams as elements, so any block size fits it."""
    size = itemsize(entry["dtype"])
    shape = entry["shape"]
    if len(shape) == 2 and entry.get("row_stride") and entry["row_stride"] != shape[1]:
        return shape[1] * size, entry["row_stride"] * size
    return size, size


def place_into(image):
    """A `copy` for stream_weights that fills a host region image (the CPU path and tests)."""
    def copy(offset, block, rows, row_bytes, stride_bytes):
        source = np.frombuffer(block, dtype=np.uint8).reshape(rows, row_bytes)
        target = np.lib.stride_tricks.as_strided(image[offset:], shape=(rows, row_bytes), strides=(stride_bytes, 1))
        target[...] = source
    return copy
