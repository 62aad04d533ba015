"""Quantized plans (--quant int8 / int4 / fp8) on the GPU against Hugging Face on the GPU running
the same model with each linear weight replaced by its dequantized value (float32 plans: the
kernels' dequantization and every matmul path, one row at batch 1 and MMA tiles at batch 2)."""

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("hf_in_float32")]

cupy = pytest.importorskip("cupy")
torch = pytest.importorskip("torch")

from compiler.compile import compile_plan  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.generate import generate_greedy  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.gpu.gpu_cases import PARITY_FAMILIES, QUANT_PARITY, parity_options  # noqa: E402
from tests.hf_reference import QUANT_GROUP, QUANT_SIZES, build_model, fake_quantize, save_checkpoint  # noqa: E402
from tests.parity import (PROMPT_LENGTHS, check_prefill_and_decode, hf_greedy, hf_logits, prefill_rows,  # noqa: E402
                           relative_error)

FP32_BOUND = 2e-4  # as the float plans' (test_plan_gpu.py)


@pytest.fixture(scope="module", params=QUANT_PARITY, ids=lambda case: f"{case[0]}-{case[1]}-b{case[2]}")
def compiled(request, tmp_path_factory):
    family, mode, max_batch = request.param
    directory = tmp_path_factory.mktemp(f"{family}-{mode}-{max_batch}")
    model = build_model(family, seed=PARITY_FAMILIES.index(family), **QUANT_SIZES.get(family, {}))
    save_checkpoint(model, str(directory))
    options = parity_options(str(directory), int(cupy.cuda.Device().compute_capability), max_batch, quant=mode)
    compile_plan(family, str(directory / "model.plan"), options)
    return fake_quantize(model, mode, QUANT_GROUP).cuda(), load_plan(str(directory / "model.plan"))


def test_quantized_plan_matches_fake_quantized_hf(compiled):
    model, plan = compiled
    executor = CupyExecutor(plan)
    if plan["limits"]["max_batch"] >= 2:
        worst = check_prefill_and_decode(model, executor, bound=FP32_BOUND)
    else:
        worst = _check_one_sequence(model, executor)
    print(f"{plan['model']['family']} {plan['quantization']['mode']}: worst relative error {worst:.2e}")
    rng = np.random.default_rng(9)
    prompt = list(rng.integers(0, model.config.vocab_size, size=PROMPT_LENGTHS[0]))
    expected, margins = hf_greedy(model, prompt, 12)
    ours = generate_greedy(executor, [prompt], max_new_tokens=12)[0]
    agree = next((step for step, margin in enumerate(margins) if margin <= 1e-4), len(margins))
    assert ours[:agree] == expected[:agree]


def _check_one_sequence(model, executor, length=11, steps=4):
    """Prefill logits of one prompt, then `steps` decode steps (one-row matmuls), against HF."""
    rng = np.random.default_rng(3)
    sequence = list(rng.integers(0, model.config.vocab_size, size=length + steps))
    reference = hf_logits(model, sequence)
    executor.reset()
    tokens = np.zeros((1, 16), dtype=np.int32)
    tokens[0, :length] = sequence[:length]
    positions, logits = prefill_rows(executor.run("prefill_16", tokens, [0], [length])["logits"], 1, 0, length, 16)
    worst = relative_error(logits, reference[positions])
    for step in range(steps):
        position = length + step
        logits = executor.run("decode", [[sequence[position]]], [position], [1])["logits"][0]
        worst = max(worst, relative_error(logits, reference[position]))
    assert worst < FP32_BOUND, worst
    return worst
