"""External weights on the GPU: the streamed upload (pinned blocks, padded rows by memcpy2D)
leaves the weights region byte-identical to the embedded plan's, and both plans compute the
same logits."""

import dataclasses

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

from compiler.compile import compile_plan  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.generate import prefill  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.gpu.gpu_cases import KERNEL_CASES, kernel_case_options  # noqa: E402


def _region(executor):
    memory = executor.regions["weights"]
    return cupy.ndarray((executor.plan["regions"]["weights"],), dtype=cupy.uint8, memptr=memory).get()


def test_streamed_external_weights_equal_the_embedded_image(tmp_path):
    sm = int(cupy.cuda.Device().compute_capability)
    case = next(case for case in KERNEL_CASES if case[0] == "llama-tiny-bf16")
    executors = []
    for storage in ("embedded", "external"):
        options = dataclasses.replace(kernel_case_options(case, sm), weights_storage=storage)
        compile_plan(case[1], str(tmp_path / f"{storage}.plan"), options)
        executors.append(CupyExecutor(load_plan(str(tmp_path / f"{storage}.plan"))))
    embedded, external = executors
    assert any(e["row_stride"] != e["shape"][-1] for e in external.plan["weights"]["table"] if len(e["shape"]) == 2)
    np.testing.assert_array_equal(_region(external), _region(embedded))
    prompt = [[5, 17, 300, 2, 999, 41], [7, 7, 1, 0, 12, 600]]
    np.testing.assert_array_equal(prefill(external, prompt), prefill(embedded, prompt))
