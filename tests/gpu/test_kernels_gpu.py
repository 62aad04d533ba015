"""Every kernel on the GPU against the NumPy executor's kernel, launch by launch.

For each plan of gpu_cases.KERNEL_CASES (odd widths 48/192, vocab 50257, head_dim 16/32/64,
GQA 3, a 37-row bucket, fp32/fp16/bf16), both executors get the same fresh random tokens; the
GPU arena and outputs are poisoned with NaN first. After each launch, its output operands are
compared; the first mismatch names the launch, op and template.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

from compiler.compile import compile_plan  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.dtypes import from_float32, itemsize, to_float32  # noqa: E402
from runtime.numpy_executor import NumpyExecutor  # noqa: E402
from runtime.numpy_kernels import View  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.gpu.gpu_cases import KERNEL_CASES, kernel_case_options  # noqa: E402

BOUNDS = {"float32": 5e-3, "float16": 2e-2, "bfloat16": 5e-2}  # fp32 matmuls run in TF32


def _outputs(template, args):
    if template == "kv_append":
        return args[4:6]
    if template == "add_norm":
        return args[-2:]
    return args[-1:]


def _gpu_array(executor, operand):
    return to_float32(executor._view(operand).get(), operand["dtype"])


@pytest.fixture(scope="module", params=KERNEL_CASES, ids=[case[0] for case in KERNEL_CASES])
def case_plan(request, tmp_path_factory):
    sm = int(cupy.cuda.Device().compute_capability)
    path = str(tmp_path_factory.mktemp("plans") / f"{request.param[0]}.plan")
    compile_plan(request.param[1], path, kernel_case_options(request.param, sm))
    return load_plan(path)


@pytest.mark.parametrize("program", ["prefill", "decode"])
def test_each_launch_matches_numpy(case_plan, program):
    name = next(n for n in case_plan["programs"] if n.startswith(program))
    spec = case_plan["programs"][name]
    batch, seq = spec["batch"], spec["seq"]
    rng = np.random.default_rng(17)
    vocab = case_plan["model"]["config"]["vocab_size"]
    tokens = rng.integers(0, vocab, size=(batch, seq)).astype(np.int32)
    start = np.array([0, 0] if program == "prefill" else [5, 9], dtype=np.int32)
    lengths = np.full(batch, seq, dtype=np.int32)

    reference = NumpyExecutor(case_plan)
    gpu = CupyExecutor(case_plan, use_graphs=False)
    for region in ("arena", "io"):
        gpu.regions[region].memset(0xFF, case_plan["regions"][region])  # NaN in every float
    if program == "decode":  # a KV cache with history, the same bytes on both sides
        dtype = case_plan["model"]["dtype"]
        count = case_plan["regions"]["kv"] // itemsize(dtype)
        history = from_float32(0.5 * rng.standard_normal(count), dtype).view(np.uint8)
        reference.regions["kv"][:history.size] = history
        gpu.regions["kv"].copy_from_host(history.ctypes.data, history.size)

    inputs, ref_launches, _ = reference._programs[name]
    for key, value in (("tokens", tokens), ("start_pos", start), ("seq_lens", lengths)):
        inputs[key].write(value)
    gpu.set_inputs(name, tokens, start, lengths)
    _, gpu_launches, _ = gpu._programs[name]
    dtype = case_plan["model"]["dtype"]
    for index, ((kernel, constants, views), launch, (function, grid, block, args)) in enumerate(
            zip(ref_launches, spec["launches"], gpu_launches)):
        kernel(constants, *views)
        function(grid, block, args, stream=gpu.stream)
        gpu.stream.synchronize()
        template = case_plan["kernels"][launch["kernel"]]["template"]
        for operand in _outputs(template, launch["args"]):
            expected = View(reference.regions, operand).read()
            actual = _gpu_array(gpu, operand)
            scale = max(float(np.abs(expected).max()), 1e-6)
            error = float(np.nan_to_num(np.abs(actual - expected), nan=np.inf).max()) / scale
            assert error < BOUNDS[dtype], f"launch {index} ({launch['op']}, {template}): rel err {error:.3g}"
