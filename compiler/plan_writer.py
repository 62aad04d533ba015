"""Write a plan (and its external weights file) atomically: temp file in place, then rename."""

import hashlib
import os
import tempfile

from compiler.errors import CompileError
from runtime.plan import encode_plan
from runtime.safetensors_file import write_safetensors


def _atomic_write(path, write):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise


def write_external_weights(path, specs, arrays):
    """Write tensors (see write_safetensors) as a .safetensors beside the plan; returns its sha256."""
    digest = hashlib.sha256()

    class _Hashing:
        def __init__(self, stream):
            self.stream = stream

        def write(self, data):
            digest.update(data)
            self.stream.write(data)

    _atomic_write(path, lambda stream: write_safetensors(_Hashing(stream), specs, arrays))
    return digest.hexdigest()


def write_plan(body, path):
    """Encode `body` and write it to `path` atomically; returns the file size."""
    try:
        data = encode_plan(body)
        _atomic_write(path, lambda stream: stream.write(data))
    except OSError as exc:
        raise CompileError(f"{path}: cannot write plan: {exc.strerror}") from None
    return len(data)
