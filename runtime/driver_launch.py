"""Kernel launches through the CUDA driver's cuLaunchKernelEx with programmatic dependent launch.

A kernel launched with the programmatic-stream-serialization attribute may begin (launch, set
up) while the kernel before it on the stream still runs; every cgc template first calls
`ct.grid_dependency_control_wait()`, which blocks until that kernel has finished and its writes
are visible, so results are unchanged and the gap between kernels shrinks. Captured into a CUDA
graph, the launches become programmatic edges. Only ctypes and the driver library are needed.
"""

import ctypes

from runtime.errors import DeviceError

_PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION


class _AttributeValue(ctypes.Union):
    _fields_ = [("pad", ctypes.c_char * 64), ("programmatic_stream_serialization_allowed", ctypes.c_int)]


class _Attribute(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", _AttributeValue)]


class _Config(ctypes.Structure):
    _fields_ = [("grid_x", ctypes.c_uint), ("grid_y", ctypes.c_uint), ("grid_z", ctypes.c_uint),
                ("block_x", ctypes.c_uint), ("block_y", ctypes.c_uint), ("block_z", ctypes.c_uint),
                ("shared_bytes", ctypes.c_uint), ("stream", ctypes.c_void_p),
                ("attrs", ctypes.POINTER(_Attribute)), ("num_attrs", ctypes.c_uint)]


_driver = None


def _library():
    global _driver
    if _driver is None:
        try:
            _driver = ctypes.CDLL("libcuda.so.1")
        except OSError as exc:
            raise DeviceError(f"cannot load the CUDA driver library libcuda.so.1 ({exc})") from None
        _driver.cuLaunchKernelEx.argtypes = [ctypes.POINTER(_Config), ctypes.c_void_p,
                                             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]
        _driver.cuLaunchKernelEx.restype = ctypes.c_int
    return _driver


class DependentLaunch:
    """One kernel launch with its parameters packed once; `launch(stream_ptr)` enqueues it."""

    def __init__(self, function_ptr, grid, block, args):
        self._function = ctypes.c_void_p(function_ptr)
        self._values = [ctypes.c_uint64(int(a)) if a.dtype.itemsize == 8 else ctypes.c_int32(int(a)) for a in args]
        self._params = (ctypes.c_void_p * len(self._values))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in self._values])
        self._attribute = _Attribute(id=_PROGRAMMATIC_STREAM_SERIALIZATION)
        self._attribute.value.programmatic_stream_serialization_allowed = 1
        self._config = _Config(*grid, *block, 0, None, ctypes.pointer(self._attribute), 1)

    def launch(self, stream_ptr):
        self._config.stream = stream_ptr
        status = _library().cuLaunchKernelEx(ctypes.byref(self._config), self._function, self._params, None)
        if status != 0:
            name = ctypes.c_char_p()
            _library().cuGetErrorName(status, ctypes.byref(name))
            raise DeviceError(f"cuLaunchKernelEx failed: {(name.value or b'CUDA error').decode()} ({status})")
