"""The runtime notes a plan tiled for another SM count than the GPU has, and only then."""

import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

from compiler.compile import compile_plan  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.gpu.gpu_cases import KERNEL_CASES, kernel_case_options  # noqa: E402


def test_a_plan_for_another_sm_count_is_noted(tmp_path):
    sm = int(cupy.cuda.Device().compute_capability)
    actual = cupy.cuda.Device().attributes["MultiProcessorCount"]
    case = next(case for case in KERNEL_CASES if case[0] == "llama-tiny-bf16")
    compile_plan(case[1], str(tmp_path / "p.plan"), kernel_case_options(case, sm))
    plan = load_plan(str(tmp_path / "p.plan"))
    plan["devices"][f"sm_{sm}"]["sm_count"] = actual
    assert CupyExecutor(plan).mismatch is None
    plan["devices"][f"sm_{sm}"]["sm_count"] = actual // 2
    note = CupyExecutor(plan).mismatch
    assert f"tiled for {actual // 2} SMs" in note and f"has {actual}" in note and f"--sm {sm}:{actual}" in note
