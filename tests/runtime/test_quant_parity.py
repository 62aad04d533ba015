"""Quantized plans (--quant) on the NumPy executor equal Hugging Face running the same model with
each linear weight replaced by its dequantized value (tests/hf_reference.fake_quantize), in
float32: prefill and decode logits within the float32 plans' bound, greedy tokens equal, for
every family and mode. (How far quantization moves the logits from the float model is a
benchmark's report, not a test: benchmarks/quant_quality.py.)"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from runtime.generate import generate  # noqa: E402
from runtime.numpy_executor import NumpyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.hf_reference import QUANT_GROUP, QUANT_SIZES, build_model, fake_quantize, save_checkpoint  # noqa: E402
from tests.parity import PROMPT_LENGTHS, check_prefill_and_decode, hf_greedy  # noqa: E402

FAMILIES = ["gpt2", "llama", "qwen2", "qwen3"]
MODES = ["int8", "int4", "fp8"]
NEW_TOKENS = 16


@pytest.fixture(scope="module", params=[(f, m) for f in FAMILIES for m in MODES], ids=lambda p: f"{p[0]}-{p[1]}")
def compiled(request, tmp_path_factory):
    family, mode = request.param
    directory = tmp_path_factory.mktemp(f"{family}-{mode}")
    model = build_model(family, seed=FAMILIES.index(family), **QUANT_SIZES.get(family, {}))
    save_checkpoint(model, str(directory))
    options = CompileOptions(checkpoint=str(directory), max_batch=2, max_seq=48, prefill_buckets=(16,),
                             quant=mode, group_size=QUANT_GROUP)
    body = compile_plan(family, str(directory / "model.plan"), options)
    return fake_quantize(model, mode, QUANT_GROUP), NumpyExecutor(load_plan(str(directory / "model.plan"))), body


def test_plan_records_its_quantized_weights(compiled):
    _, _, body = compiled
    record = body["quantization"]
    assert record["source"] == "compile"
    linears = record["linears"]
    assert linears and all(entry["mode"] == (record["mode"] if name != "lm_head" else entry["mode"])
                           for name, entry in linears.items())
    parts = [entry["quant"] for entry in body["weights"]["table"] if "quant" in entry]
    assert {part["of"] for part in parts} and all(part["mode"] in ("int8", "int4", "fp8") for part in parts)
    codes = {"int8": "int8", "int4": "uint8", "fp8": "float8_e4m3"}
    for entry in body["weights"]["table"]:
        if entry.get("quant", {}).get("part") == "codes":
            assert entry["dtype"] == codes[entry["quant"]["mode"]]


def test_int4_prefill_multiplies_by_dequantized_copies(compiled):
    """Prefill-shaped launches (32 rows here) of int4 plans read each linear's float copy, written
    to scratch by the dequant launch just before; decode, the LM head, int8 and fp8 read the codes."""
    _, _, body = compiled
    kernels = body["kernels"]
    linears = [name for name in body["quantization"]["linears"] if name != "lm_head"]
    for program, spec in body["programs"].items():
        launches = spec["launches"]
        templates = [kernels[launch["kernel"]]["template"] for launch in launches]
        dequants = [index for index, template in enumerate(templates) if template == "dequant"]
        if program == "decode" or body["quantization"]["mode"] != "int4":
            assert not dequants
            continue
        assert sorted(launches[index]["op"] for index in dequants) == sorted(linears)
        for index in dequants:
            matmul = launches[index + 1]
            constants = kernels[matmul["kernel"]]["constants"]
            assert kernels[matmul["kernel"]]["template"] == "matmul" and matmul["op"] == launches[index]["op"]
            assert "weight_quant" not in constants and constants["prefetch"] == 0
            assert launches[index]["args"][-1]["region"] == "scratch"
            assert matmul["args"][1]["region"] == "scratch" or matmul["args"][2]["region"] == "scratch"
        lm_head = [launch for launch in launches if kernels[launch["kernel"]]["template"] == "matmul"][-1]
        assert "weight_quant" in kernels[lm_head["kernel"]]["constants"]


def test_logits_equal_fake_quantized_hf(compiled):
    model, executor, _ = compiled
    check_prefill_and_decode(model, executor, bound=1e-4)


def test_greedy_tokens_equal_fake_quantized_hf(compiled):
    model, executor, _ = compiled
    rng = np.random.default_rng(5)
    prompts = [list(rng.integers(0, model.config.vocab_size, size=n)) for n in PROMPT_LENGTHS]
    ours = generate(executor, prompts, NEW_TOKENS, eos_token_ids=()).tokens
    for prompt, generated in zip(prompts, ours):
        expected, margins = hf_greedy(model, prompt, NEW_TOKENS)
        if min(margins) > 1e-4:  # no near tie that float32 rounding could flip
            assert generated == expected
        else:
            step = int(np.argmin(margins))
            assert generated[:step] == expected[:step]
