"""A 7B-shaped plan on the GPU against Hugging Face on the GPU: the Qwen2-7B decoder's full widths
(hidden 3584, 28/4 heads, intermediate 18944, vocabulary 152064) at two layers, bf16, batch 1 and 8.

HF runs the same bf16 weights in float32 (the reference); the plan multiplies bf16 tiles with
float32 accumulation, so prefill and decode logits must agree to bf16's precision, and greedy
tokens wherever HF's top two logits are further apart than that. Its kernels are those of
`python benchmarks/decode.py --export-only SM --models qwen2-7b --batches 1,8` (one-layer plans
of the preset; the same max sequence and prefill bucket as here).
"""

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.usefixtures("hf_in_float32")]

cupy = pytest.importorskip("cupy")
torch = pytest.importorskip("torch")

from benchmarks.decode import MODELS, PROMPT, cast_like_loaded, compile_model, max_seq  # noqa: E402
from runtime.cupy_executor import CupyExecutor  # noqa: E402
from runtime.generate import generate_greedy  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.parity import hf_greedy, hf_logits, prefill_rows, relative_error  # noqa: E402

LAYERS = 2
NEW_TOKENS = 128  # sets the plan's max sequence as decode.py's export does
BF16_BOUND = 3e-2  # bf16 weights and activations, float32 accumulation, relative to the largest logit


@pytest.fixture(scope="module")
def seven_b(tmp_path_factory):
    import transformers
    directory = tmp_path_factory.mktemp("qwen2-7b")
    model = MODELS["qwen2-7b"]
    config = getattr(transformers, model["config"])(**{**model["kwargs"], "num_hidden_layers": LAYERS})
    torch.manual_seed(0)
    with torch.device("cuda"):
        hf = getattr(transformers, model["class"])(config).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.02)
    hf = cast_like_loaded(hf, torch.bfloat16)
    hf.save_pretrained(str(directory), safe_serialization=True)
    return hf.float(), _plan(directory, 1)


def _plan(directory, batch):
    """The two-layer plan of `batch` sequences compiled from the checkpoint in `directory`."""
    plan_path = str(directory / f"model-{batch}.plan")
    compile_model("qwen2-7b", batch, NEW_TOKENS, int(cupy.cuda.Device().compute_capability), str(directory), plan_path,
                  overrides={"num_hidden_layers": LAYERS})
    return load_plan(plan_path), directory


def test_7b_shaped_plan_matches_hf_logits_and_greedy_tokens(seven_b):
    hf, (plan, _) = seven_b
    assert plan["limits"]["max_seq"] == max_seq(NEW_TOKENS)
    executor = CupyExecutor(plan)
    rng = np.random.default_rng(2)
    sequence = rng.integers(0, hf.config.vocab_size, size=PROMPT + 4).tolist()
    reference = hf_logits(hf, sequence)
    executor.reset()
    logits = executor.run(f"prefill_{PROMPT}", np.array([sequence[:PROMPT]], dtype=np.int32), [0], [PROMPT])["logits"]
    positions, logits = prefill_rows(logits, 1, 0, PROMPT, PROMPT)
    assert relative_error(logits, reference[positions]) < BF16_BOUND
    for step in range(4):
        position = PROMPT + step
        logits = executor.run("decode", [[sequence[position]]], [position], [1])["logits"][0]
        assert relative_error(logits, reference[position]) < BF16_BOUND, step
    expected, margins = hf_greedy(hf, sequence[:PROMPT], 8)
    ours = generate_greedy(executor, [sequence[:PROMPT]], max_new_tokens=8)[0]
    agree = next((step for step, margin in enumerate(margins) if margin <= BF16_BOUND), len(margins))
    assert ours[:agree] == expected[:agree]


def test_7b_shaped_batch_8_plan_matches_hf_logits_on_every_row(seven_b):
    """Batch 8 takes decode MMA tiles (the gate+up's too, 18944 outputs): eight prompts prefilled
    in one launch, then four decode steps, each row against HF's logits for its own sequence."""
    hf, (_, directory) = seven_b
    plan, _ = _plan(directory, 8)
    executor = CupyExecutor(plan)
    rng = np.random.default_rng(3)
    sequences = rng.integers(0, hf.config.vocab_size, size=(8, PROMPT + 4))
    references = [hf_logits(hf, sequence.tolist()) for sequence in sequences]
    executor.reset()
    logits = executor.run(f"prefill_{PROMPT}", sequences[:, :PROMPT].astype(np.int32), [0] * 8, [PROMPT] * 8)["logits"]
    for b in range(8):
        positions, rows = prefill_rows(logits, 8, b, PROMPT, PROMPT)
        error = relative_error(rows, references[b][positions])
        assert error < BF16_BOUND, ("prefill", b, error)
    for step in range(4):
        position = PROMPT + step
        logits = executor.run("decode", sequences[:, position:position + 1].astype(np.int32), [position] * 8, [1] * 8)["logits"]
        for b in range(8):
            error = relative_error(logits[b], references[b][position])
            assert error < BF16_BOUND, ("decode", step, b, error)
