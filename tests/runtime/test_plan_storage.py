"""Plan storage: external weights round-trip with a checked sha256; reduced dtypes stay close to fp32."""

import numpy as np
import pytest

from compiler.compile import CompileOptions, compile_plan
from runtime.errors import PlanError
from runtime.generate import prefill
from runtime.numpy_executor import NumpyExecutor
from runtime.plan import load_plan

PROMPT = [[3, 99, 512, 7, 1000, 42, 5]]


def _compile(tmp_path, name, **kwargs):
    path = str(tmp_path / f"{name}.plan")
    options = CompileOptions(preset="tiny", max_seq=32, prefill_buckets=(8,), **kwargs)
    compile_plan("qwen3", path, options)
    return path


def test_external_weights_match_embedded(tmp_path):
    embedded = NumpyExecutor(load_plan(_compile(tmp_path, "a")))
    external_path = _compile(tmp_path, "b", weights_storage="external")
    external = NumpyExecutor(load_plan(external_path))
    assert (tmp_path / external.plan["weights"]["file"]).exists()
    np.testing.assert_array_equal(prefill(embedded, PROMPT), prefill(external, PROMPT))


def test_external_weights_checked(tmp_path):
    path = _compile(tmp_path, "b", weights_storage="external")
    weights = tmp_path / load_plan(path)["weights"]["file"]
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(PlanError, match="sha256 mismatch"):
        NumpyExecutor(load_plan(path))


@pytest.mark.parametrize("dtype, bound", [("float16", 2e-2), ("bfloat16", 5e-2)])
def test_reduced_precision_close_to_fp32(tmp_path, dtype, bound):
    reference = prefill(NumpyExecutor(load_plan(_compile(tmp_path, "fp32"))), PROMPT)
    reduced = prefill(NumpyExecutor(load_plan(_compile(tmp_path, dtype, dtype=dtype))), PROMPT)
    error = np.abs(reduced - reference).max() / np.abs(reference).max()
    assert error < bound
    assert not np.array_equal(reduced, reference)  # the dtype really changed the arithmetic


def test_tf32_is_an_opt_in_marked_on_matmul_and_attention(tmp_path):
    exact = load_plan(_compile(tmp_path, "f", dtype="float32"))
    tf32 = load_plan(_compile(tmp_path, "t", dtype="tf32"))
    assert tf32["model"]["dtype"] == "float32"  # stored as float32; only the MMA precision differs
    assert not any("mma" in kernel["constants"] for kernel in exact["kernels"])
    marked = {kernel["template"] for kernel in tf32["kernels"] if kernel["constants"].get("mma") == "tf32"}
    assert marked == {"matmul", "attention"}
    # the NumPy executor is the float32 reference of both
    np.testing.assert_array_equal(prefill(NumpyExecutor(exact), PROMPT), prefill(NumpyExecutor(tf32), PROMPT))
