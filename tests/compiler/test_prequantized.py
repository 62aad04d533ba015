"""Pre-quantized GPTQ and AWQ checkpoints compile without re-quantizing: the plan equals Hugging
Face running the model with each linear weight set to the checkpoint's dequantized value.

The packed tensors are made, or checked, by AutoAWQ's own CPU packing code (awq/utils/
packing_utils.py from its source package; .ci/run extracts it and sets CGC_AUTOAWQ_PACKING):
GPTQ tensors by its `pack_exllama` (GPTQ v1 layout, zero points stored less one), AWQ tensors
by our test packer, checked against its `dequantize_gemm` before use.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from compiler.errors import CheckpointError, CompileError  # noqa: E402
from compiler.prequantized import read_quantization_config  # noqa: E402
from runtime.errors import CgcError  # noqa: E402
from runtime.numpy_executor import NumpyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.hf_reference import build_model, fake_quantize  # noqa: E402
from tests.parity import check_prefill_and_decode, prefill_rows  # noqa: E402

PACKING = os.environ.get("CGC_AUTOAWQ_PACKING")
GROUP = 32
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


@pytest.fixture(scope="module")
def awq_packing():
    if not PACKING:
        pytest.skip("set CGC_AUTOAWQ_PACKING to AutoAWQ's awq/utils/packing_utils.py (.ci/run does)")
    spec = importlib.util.spec_from_file_location("awq_packing_utils", PACKING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _random_parts(rng, features, depth, zero_low):
    """Codes [K, N], zero points [K/G, N] and float16 scales [K/G, N] of a [N, K] linear."""
    codes = rng.integers(0, 16, size=(depth, features))
    zeros = rng.integers(zero_low, 16, size=(depth // GROUP, features))
    scales = (rng.uniform(0.5, 1.5, size=(depth // GROUP, features)) * 0.01).astype(np.float16)
    return codes, zeros, scales


def _dequantized(codes, zeros, scales):
    """The float32 [N, K] weight the parts stand for: (code - zero) * scale."""
    repeat = lambda values: np.repeat(values, GROUP, axis=0)  # noqa: E731
    return ((codes - repeat(zeros)) * repeat(scales.astype(np.float32))).astype(np.float32).T


def _awq_words(codes):
    """Our AWQ packing of codes [R, C] into int32 [R, C / 8] (column 8c + AWQ_ORDER[i] in bits 4i)."""
    grouped = codes.reshape(codes.shape[0], -1, 8)[:, :, list(AWQ_ORDER)].astype(np.uint32)
    words = np.zeros(grouped.shape[:2], dtype=np.uint32)
    for i in range(8):
        words |= grouped[:, :, i] << (4 * i)
    return words.view(np.int32)


def _write_checkpoint(directory, method, awq_packing):
    """A small Llama with every non-head linear stored pre-quantized; returns the HF model whose
    linear weights are the dequantized values."""
    from safetensors.torch import load_file, save_file
    model = build_model("llama", seed=4)
    model.save_pretrained(directory, safe_serialization=True)
    tensors = load_file(os.path.join(directory, "model.safetensors"))
    rng = np.random.default_rng(5)
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name == "lm_head":
            continue
        features, depth = module.weight.shape
        codes, zeros, scales = _random_parts(rng, features, depth, 1 if method == "gptq" else 0)
        weight = _dequantized(codes, zeros, scales)
        module.weight = torch.nn.Parameter(torch.from_numpy(weight))
        del tensors[f"{name}.weight"]
        if method == "gptq":  # the library's GPTQ (exllama) packing: along K, zero points less one
            qweight, qzeros = awq_packing.pack_exllama(torch.from_numpy(codes).int(), torch.from_numpy(zeros - 1).int(), 4)
            tensors[f"{name}.g_idx"] = torch.arange(depth, dtype=torch.int32) // GROUP
        else:
            qweight, qzeros = torch.from_numpy(_awq_words(codes)), torch.from_numpy(_awq_words(zeros))
            restored = awq_packing.dequantize_gemm(qweight, qzeros, torch.from_numpy(scales), 4, GROUP)
            np.testing.assert_allclose(restored.float().numpy().T, weight, rtol=1e-3, atol=1e-6)  # fp16 products
        tensors.update({f"{name}.qweight": qweight.contiguous(), f"{name}.qzeros": qzeros.contiguous(),
                        f"{name}.scales": torch.from_numpy(scales)})
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    config_path = os.path.join(directory, "config.json")
    config = json.load(open(config_path))
    config["quantization_config"] = ({"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": False,
                                      "sym": False, "checkpoint_format": "gptq"} if method == "gptq" else
                                     {"quant_method": "awq", "bits": 4, "group_size": GROUP, "version": "gemm",
                                      "zero_point": True})
    json.dump(config, open(config_path, "w"))
    return model


@pytest.mark.parametrize("method", ["gptq", "awq"])
@pytest.mark.parametrize("max_batch", [1, 2])
def test_prequantized_checkpoint_equals_its_dequantized_model(tmp_path, awq_packing, method, max_batch):
    model = _write_checkpoint(str(tmp_path), method, awq_packing)
    options = CompileOptions(checkpoint=str(tmp_path), max_batch=max_batch, max_seq=48, prefill_buckets=(16,))
    body = compile_plan("llama", str(tmp_path / "model.plan"), options)
    assert body["quantization"]["mode"] == "int4" and body["quantization"]["group_size"] == GROUP
    assert body["quantization"]["linears"]["lm_head"]["mode"] == "int8"  # stored as floats: quantized here
    assert body["quantization"]["source"] == method
    from runtime.inspect_plan import describe
    assert any(f"codes of the {method.upper()} checkpoint, kept" in line
               for line in describe(load_plan(str(tmp_path / "model.plan"))))
    executor = NumpyExecutor(load_plan(str(tmp_path / "model.plan")))
    # the checkpoint's LM head is float: cgc quantizes it (int8), so HF gets the same head
    model.lm_head.weight = fake_quantize(build_model("llama", seed=4), "int8").lm_head.weight
    if max_batch == 2:
        check_prefill_and_decode(model, executor, bound=1e-4)
    else:
        tokens = np.zeros((1, 16), dtype=np.int32)
        prompt = np.random.default_rng(1).integers(0, 1000, size=11)
        tokens[0, :11] = prompt
        positions, ours = prefill_rows(executor.run("prefill_16", tokens, [0], [11])["logits"], 1, 0, 11, 16)
        with torch.no_grad():
            reference = model(torch.tensor([prompt.tolist()])).logits[0].numpy()[positions]
        assert np.abs(ours - reference).max() / np.abs(reference).max() < 1e-4


def test_other_quantization_flags_for_a_prequantized_checkpoint_are_refused(tmp_path, awq_packing):
    _write_checkpoint(str(tmp_path), "awq", awq_packing)
    for quant, group in (("int8", 128), ("int4", 128)):
        with pytest.raises(CompileError, match="AWQ int4 in groups of 32; compile it without --quant"):
            compile_plan("llama", str(tmp_path / "x.plan"),
                         CompileOptions(checkpoint=str(tmp_path), quant=quant, group_size=group))


@pytest.mark.parametrize("fields, message", [
    ({"quant_method": "bitsandbytes", "bits": 4}, r"quant_method 'bitsandbytes' is not supported"),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, r"\.bits 8 is not supported"),
    ({"quant_method": "gptq", "bits": 4, "group_size": -1}, r"\.group_size -1 is not supported"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"}, r"checkpoint_format 'marlin'"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}, r"\.version 'gemv' is not supported"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": False}, r"zero_point false"),
])
def test_unsupported_variants_name_the_field(tmp_path, fields, message):
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": fields}))
    with pytest.raises(CheckpointError, match=r"config\.json: quantization_config" + ".*" + message):
        read_quantization_config(str(tmp_path))


def test_act_order_groups_are_refused_naming_g_idx(tmp_path, awq_packing):
    from safetensors.torch import load_file, save_file
    _write_checkpoint(str(tmp_path), "gptq", awq_packing)
    path = os.path.join(tmp_path, "model.safetensors")
    tensors = load_file(path)
    key = "model.layers.0.self_attn.q_proj.g_idx"
    tensors[key] = tensors[key].flip(0).contiguous()
    save_file(tensors, path)
    with pytest.raises(CgcError, match=r"q_proj\.g_idx assigns input features to groups out of order"):
        compile_plan("llama", str(tmp_path / "x.plan"), CompileOptions(checkpoint=str(tmp_path)))


def test_packed_tensors_of_the_wrong_dtype_or_shape_are_named(tmp_path, awq_packing):
    from safetensors.torch import load_file, save_file
    _write_checkpoint(str(tmp_path), "awq", awq_packing)
    path = os.path.join(tmp_path, "model.safetensors")
    original = load_file(path)
    key = "model.layers.1.mlp.down_proj"
    for change, message in ((lambda t: t[f"{key}.qweight"].float(), r"down_proj\.qweight has dtype float32, expected int32"),
                            (lambda t: t[f"{key}.qweight"][:-1].contiguous(), r"down_proj\.qweight has shape")):
        tensors = dict(original)
        tensors[f"{key}.qweight"] = change(tensors)
        save_file(tensors, path)
        with pytest.raises(CgcError, match=message):
            compile_plan("llama", str(tmp_path / "x.plan"), CompileOptions(checkpoint=str(tmp_path)))
