"""NumPy references of the kernel templates: the semantic reference for the GPU kernels.

One module per template, `runtime/kernels/<template>.py`, defining a function of the template's
name that takes the kernel's constants and its operands as `View`s (contract: templates/README.md;
operand order: the template's `roles` in compiler/kernels/<template>.py). `reference(template)`
finds it by name, so a new template needs no edit here. Computation is float32; values round to
the operand dtype when written, as the GPU kernels' stores do. `shared.py` holds the helpers
several references use.
"""

import importlib
from functools import lru_cache

import numpy as np

from runtime.dtypes import from_float32, itemsize, storage_dtype, to_float32


class View:
    """A strided window onto a region (one kernel operand)."""

    def __init__(self, regions, operand):
        self.dtype = operand["dtype"]
        size = itemsize(self.dtype)
        self.array = np.ndarray(tuple(operand["shape"]), dtype=storage_dtype(self.dtype),
                                buffer=regions[operand["region"]], offset=operand["offset"],
                                strides=tuple(s * size for s in operand["strides"]))

    def read(self):
        """Values as float32 (int32 operands as int64)."""
        if self.dtype == "int32":
            return self.array.astype(np.int64)
        return to_float32(self.array, self.dtype)

    def write(self, values):
        """Store values, rounding to the operand's dtype."""
        self.array[...] = from_float32(values, self.dtype) if self.dtype != "int32" else values


@lru_cache(maxsize=None)
def reference(template):
    """The NumPy function of `template` (module runtime/kernels/<template>.py), or None."""
    if not template.isidentifier() or template == "shared":
        return None
    try:
        module = importlib.import_module(f"runtime.kernels.{template}")
    except ModuleNotFoundError as exc:
        if exc.name != f"runtime.kernels.{template}":
            raise
        return None
    return getattr(module, template, None)
