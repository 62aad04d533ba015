"""benchmarks/decode.py's PyTorch peers: a model cast to bf16 holds what from_pretrained loads."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from benchmarks.decode import cast_like_loaded  # noqa: E402
from tests.hf_reference import build_model  # noqa: E402


def test_cast_keeps_rope_frequencies_float32_as_from_pretrained_does(tmp_path):
    model = build_model("llama", seed=3)
    frequencies = model.model.rotary_emb.inv_freq.clone()
    cast = cast_like_loaded(model, torch.bfloat16)
    assert cast.model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.equal(cast.model.rotary_emb.inv_freq, frequencies)
    assert cast.lm_head.weight.dtype == torch.bfloat16
    cast.save_pretrained(str(tmp_path), safe_serialization=True)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.bfloat16)
    ours = dict(cast.named_buffers()) | dict(cast.named_parameters())
    theirs = dict(loaded.named_buffers()) | dict(loaded.named_parameters())
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert tensor.dtype == ours[name].dtype and torch.equal(tensor, ours[name]), name
