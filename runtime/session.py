"""Open a plan on the best available executor: the GPU (CuPy) when there is one, else NumPy."""

import sys

from runtime.errors import DeviceError, InputError
from runtime.plan import load_plan

DEVICES = ("auto", "gpu", "cpu")


def gpu_available():
    """True when CuPy is importable and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, or no device: all mean "no GPU here"
        return False


def open_plan(path, device="auto", quiet=False):
    """Load the plan at `path` and return an executor for it.

    device: "auto" (GPU if present and the plan has kernels, else CPU), "gpu" or "cpu".
    """
    if device not in DEVICES:
        raise InputError(f"unknown device {str(device)[:40]!r} (expected one of: {', '.join(DEVICES)})")
    plan = load_plan(path)
    use_gpu = device == "gpu" or (device == "auto" and plan["targets"] and gpu_available())
    if use_gpu:
        from runtime.cupy_executor import CupyExecutor
        executor = CupyExecutor(plan)
        if executor.mismatch and not quiet:
            print(f"cgc: warning: {executor.mismatch}", file=sys.stderr)
        return executor
    if not quiet:
        reason = ("--device cpu" if device == "cpu" else
                  "the plan has no GPU kernels (compile with --sm)" if not plan["targets"] else "no GPU found")
        print(f"cgc: {reason}: running on the CPU with the NumPy executor (slow)", file=sys.stderr)
    from runtime.numpy_executor import NumpyExecutor
    try:
        return NumpyExecutor(plan)
    except MemoryError:
        need = sum(plan["regions"].values())
        raise DeviceError(f"{path}: out of host memory: the plan needs {need / 1e9:.2f} GB for the NumPy "
                          f"executor") from None
