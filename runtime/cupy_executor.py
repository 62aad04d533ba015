"""Runs a plan on an NVIDIA GPU through CuPy: cubins from the plan, one CUDA graph per program.

At load: pick the cubins for this GPU's SM, allocate one buffer per region (arena, io, kv,
weights), upload the weights once, pack every launch's parameters once. Each program is captured
into a CUDA graph the first time it runs and replayed after that (`use_graphs=False` launches
eagerly, for debugging). The decode program's kernels are launched with programmatic dependent
launch (runtime/driver_launch.py): each may start while the previous one finishes
(CGC_PDL=0 turns this off). Never compiles anything.
"""

import os

import numpy as np

from runtime.driver_launch import DependentLaunch
from runtime.dtypes import itemsize, storage_dtype, to_float32
from runtime.errors import DeviceError, PlanError
from runtime.plan import weights_image
from runtime.sampling import neutral_params
from runtime.weight_upload import BLOCK_BYTES, stream_weights


def _import_cupy():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise DeviceError("no CUDA GPU found; run on the CPU with --device cpu")
        return cupy
    except ImportError:
        raise DeviceError("CuPy is not installed; install cupy-cuda13x or run with --device cpu") from None
    except Exception as exc:  # the CUDA runtime reports a missing driver or device as a generic error
        if isinstance(exc, DeviceError):
            raise
        raise DeviceError(f"no usable CUDA GPU ({exc}); run on the CPU with --device cpu") from None


def device_sm(cupy):
    """Compute capability of the current device as an int (90 for an H100)."""
    return int(cupy.cuda.Device().compute_capability)


def _pack_args(operands, region_pointers):
    args = []
    for operand in operands:
        args.append(np.uint64(region_pointers[operand["region"]] + operand["offset"]))
        args.extend(np.int32(d) for d in operand["shape"])
        args.extend(np.int32(s) for s in operand["strides"])
    return tuple(args)


class CupyExecutor:
    """Holds a plan's regions on the GPU and replays its programs."""

    name = "cupy"

    def __init__(self, plan, use_graphs=True):
        cupy = _import_cupy()
        self.cupy = cupy
        self.plan = plan
        self.use_graphs = use_graphs
        self.sm = device_sm(cupy)
        target = f"sm_{self.sm}"
        if self.sm not in plan["targets"]:
            have = ", ".join(f"sm_{sm}" for sm in plan["targets"]) or "none (a CPU-only plan)"
            name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
            raise DeviceError(f"{plan.get('path', 'plan')}: has kernels for {have}, but this GPU ({name}) is "
                              f"{target}; recompile with --sm {self.sm}")
        self.mismatch = self._sm_count_mismatch(target)
        self._allocate()
        self._functions = {}
        self._modules = []
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._programs = {name: self._bind(name, program) for name, program in plan["programs"].items()}
        self._graphs = {}
        if plan.get("generation"):
            self.write(plan["generation"]["params"], neutral_params(plan["limits"]["max_batch"]))

    def _sm_count_mismatch(self, target):
        """A note when the plan's tile rules assumed another SM count than this GPU has, else None."""
        recorded = ((self.plan.get("devices") or {}).get(target) or {}).get("sm_count")
        properties = self.cupy.cuda.runtime.getDeviceProperties(self.cupy.cuda.Device().id)
        actual = properties["multiProcessorCount"]
        if not recorded or recorded == actual:
            return None
        return (f"{self.plan.get('path', 'plan')}: its {target} kernels were tiled for {recorded} SMs, this GPU "
                f"({properties['name'].decode()}) has {actual}: results are right, speed may not be; "
                f"recompile with --sm {self.sm}:{actual} or --gpu NAME")

    def _allocate(self):
        cupy = self.cupy
        sizes = self.plan["regions"]
        try:
            self.regions = {name: cupy.cuda.alloc(max(size, 1)) for name, size in sizes.items()}
        except cupy.cuda.memory.OutOfMemoryError:
            free, total = cupy.cuda.runtime.memGetInfo()
            need = sum(sizes.values())
            detail = ", ".join(f"{name} {size / 1e9:.2f}" for name, size in sizes.items())
            raise DeviceError(f"out of GPU memory: the plan needs {need / 1e9:.2f} GB ({detail} GB); "
                              f"{free / 1e9:.2f} of {total / 1e9:.2f} GB free") from None
        for name, memory in self.regions.items():
            memory.memset(0, memory.mem.size)
        if self.plan["weights"]["storage"] == "external":
            self._upload_external()
        else:
            image = np.frombuffer(weights_image(self.plan), dtype=np.uint8)
            self.regions["weights"].copy_from_host(image.ctypes.data, image.size)
        self.pointers = {name: int(memory.ptr) for name, memory in self.regions.items()}

    def _upload_external(self):
        """Copy the external weights file to the weights region in one read, through two pinned
        blocks (runtime/weight_upload.py)."""
        runtime = self.cupy.cuda.runtime
        base = int(self.regions["weights"].ptr)
        pinned = [self.cupy.cuda.alloc_pinned_memory(BLOCK_BYTES) for _ in range(2)]
        buffers = [np.frombuffer(memory, dtype=np.uint8, count=BLOCK_BYTES) for memory in pinned]

        def copy(offset, block, rows, row_bytes, stride_bytes):
            source = np.frombuffer(block, dtype=np.uint8).ctypes.data
            if row_bytes == stride_bytes:
                runtime.memcpy(base + offset, source, rows * row_bytes, runtime.memcpyHostToDevice)
            else:
                runtime.memcpy2D(base + offset, stride_bytes, source, row_bytes, row_bytes, rows,
                                 runtime.memcpyHostToDevice)

        stream_weights(self.plan, copy, BLOCK_BYTES, buffers)

    def _view(self, operand):
        cupy = self.cupy
        size = itemsize(operand["dtype"])
        memptr = self.regions[operand["region"]] + operand["offset"]
        return cupy.ndarray(tuple(operand["shape"]), dtype=storage_dtype(operand["dtype"]), memptr=memptr,
                            strides=tuple(s * size for s in operand["strides"]))

    def _function(self, index):
        if index not in self._functions:
            kernel = self.plan["kernels"][index]
            cubin = kernel["cubins"].get(f"sm_{self.sm}")
            if cubin is None:
                raise PlanError(f"kernel {index} ({kernel['template']}) has no cubin for sm_{self.sm}")
            module = self.cupy.cuda.function.Module()
            module.load(bytes(cubin["image"]))
            self._modules.append(module)
            self._functions[index] = (module.get_function(cubin["symbol"]), tuple(cubin["block"]))
        return self._functions[index]

    def _bind(self, name, program):
        launches = []
        for launch in program["launches"]:
            target = launch.get("targets", {}).get(f"sm_{self.sm}")
            if target is None:
                raise PlanError(f"program '{name}' launch of op {launch['op']} has no kernel for sm_{self.sm}")
            function, block = self._function(target["kernel"])
            grid, args = tuple(target["grid"]), _pack_args(launch["args"], self.pointers)
            dependent = DependentLaunch(function.ptr, grid, block, args) if self._dependent(program) else None
            launches.append((function, grid, block, args, dependent))
        inputs = {key: self._view(operand) for key, operand in program["inputs"].items()}
        outputs = {key: (self._view(operand), operand["dtype"]) for key, operand in program["outputs"].items()}
        return inputs, launches, outputs

    @staticmethod
    def _dependent(program):
        """Programmatic dependent launch for decode (one wave of CTAs per kernel, but the LM
        head's, whose successor is the one-CTA-per-sequence sampler); prefill kernels run many
        waves that waiting successors would crowd."""
        return program["seq"] == 1 and os.environ.get("CGC_PDL", "1") != "0"

    def _launch_all(self, launches):
        for function, grid, block, args, dependent in launches:
            if dependent is not None:
                dependent.launch(self.stream.ptr)
            else:
                function(grid, block, args, stream=self.stream)

    def close(self):
        """Free the CUDA graphs before the modules their kernels live in (the reverse order
        crashes the driver), then the device memory."""
        self._graphs = {}
        self._programs = {}
        self._functions = {}
        self._modules = []
        self.regions = {}

    def __del__(self):
        if getattr(self, "_graphs", None) is not None:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def reset(self):
        """Clear the KV cache."""
        memory = self.regions["kv"]
        memory.memset_async(0, memory.mem.size, self.stream)

    def launch(self, program):
        """Enqueue one run of `program` on the executor's stream (inputs already in place)."""
        _, launches, _ = self._programs[program]
        if not self.use_graphs:
            self._launch_all(launches)
            return
        graph = self._graphs.get(program)
        if graph is None:
            self.stream.synchronize()
            self.stream.begin_capture()
            try:
                self._launch_all(launches)
            finally:
                graph = self.stream.end_capture()
            self._graphs[program] = graph
        graph.launch(self.stream)

    def set_inputs(self, program, tokens, start_pos, seq_lens):
        """Copy a program's inputs to the device (asynchronously, on the executor's stream)."""
        inputs, _, _ = self._programs[program]
        with self.stream:
            inputs["tokens"].set(np.ascontiguousarray(tokens, dtype=np.int32), stream=self.stream)
            inputs["start_pos"].set(np.ascontiguousarray(start_pos, dtype=np.int32), stream=self.stream)
            inputs["seq_lens"].set(np.ascontiguousarray(seq_lens, dtype=np.int32), stream=self.stream)

    def write(self, operand, values):
        """Copy `values` into a plan operand (generation state), in stream order."""
        with self.stream:
            self._view(operand).set(np.ascontiguousarray(values, dtype=storage_dtype(operand["dtype"])),
                                    stream=self.stream)

    def fetch(self, operands):
        """Start copying small contiguous operands to the host behind the work queued so far;
        returns a handle whose `wait()` gives their values as NumPy arrays."""
        return _Fetch(self, operands)

    def run(self, program, tokens, start_pos, seq_lens):
        """Run one program; returns {output name: float32 NumPy array}."""
        self.set_inputs(program, tokens, start_pos, seq_lens)
        self.launch(program)
        _, _, outputs = self._programs[program]
        result = {}
        for key, (view, dtype) in outputs.items():
            host = view.get(stream=self.stream)
            self.stream.synchronize()
            result[key] = to_float32(host, dtype)
        return result


class _Fetch:
    """An asynchronous device-to-host copy into page-locked memory, finished by `wait()`."""

    def __init__(self, executor, operands):
        cupy = executor.cupy
        sizes = [itemsize(o["dtype"]) * int(np.prod(o["shape"])) for o in operands]
        self._memory = cupy.cuda.alloc_pinned_memory(max(sum(sizes), 1))
        self.arrays, offset = [], 0
        for operand, size in zip(operands, sizes):
            host = np.frombuffer(self._memory, dtype=storage_dtype(operand["dtype"]), count=size // itemsize(
                operand["dtype"]), offset=offset).reshape(operand["shape"])
            source = executor.regions[operand["region"]].ptr + operand["offset"]
            cupy.cuda.runtime.memcpyAsync(host.ctypes.data, source, size, cupy.cuda.runtime.memcpyDeviceToHost,
                                          executor.stream.ptr)
            self.arrays.append(host)
            offset += size
        self._done = cupy.cuda.Event()
        self._done.record(executor.stream)

    def wait(self):
        """The copied arrays (blocks until the copies are done)."""
        self._done.synchronize()
        return self.arrays
