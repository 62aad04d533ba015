"""Checkpoint tensors are checked before use: shards, names, shapes, dtypes and values."""

import numpy as np
import pytest

from compiler.errors import CheckpointError
from compiler.weights import CheckpointWeights
from runtime.safetensors_file import write_safetensors


def _shard(path, tensors):
    specs = {name: (str(array.dtype), array.shape) for name, array in tensors.items()}
    write_safetensors(str(path), specs, iter(tensors.values()))


def _checkpoint(tmp_path, *shards):
    for index, tensors in enumerate(shards):
        _shard(tmp_path / f"model-{index}.safetensors", tensors)
    return CheckpointWeights(str(tmp_path))


def test_tensor_in_two_shards(tmp_path):
    a = np.ones((2, 2), np.float32)
    with pytest.raises(CheckpointError, match="tensor 'w' is also in .*model-0.safetensors"):
        _checkpoint(tmp_path, {"w": a}, {"w": a})


def test_shards_are_chosen_as_transformers_chooses_them(tmp_path):
    """The index names the shards; without one, model.safetensors alone; a plan's weights file
    compiled into the checkpoint directory is never read as a shard."""
    a, b = np.ones((2, 2), np.float32), np.zeros((3,), np.float32) + 2
    _shard(tmp_path / "model.safetensors", {"w": a})
    _shard(tmp_path / "plan.0123456789abcdef.weights.safetensors", {"w": a})
    _shard(tmp_path / "stray.safetensors", {"w": a})
    assert sorted(CheckpointWeights(str(tmp_path)).files) == ["w"]
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="stray.safetensors: tensor 'w' is also in .*model-0.safetensors"):
        _checkpoint(tmp_path, {"w": a})  # model-0 and stray: the plan's file is still left out
    for name in ("model-0.safetensors", "stray.safetensors"):
        (tmp_path / name).unlink()
    _shard(tmp_path / "model-00001-of-00002.safetensors", {"w": a})
    _shard(tmp_path / "model-00002-of-00002.safetensors", {"b": b})
    _shard(tmp_path / "model.safetensors", {"w": a})  # not in the index: not read
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {"w": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}')
    source = CheckpointWeights(str(tmp_path))
    assert sorted(source.files) == ["b", "w"]
    np.testing.assert_array_equal(source.get("b", (3,)), b)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="index.json: shard model-00002-of-00002.safetensors is not in"):
        CheckpointWeights(str(tmp_path))
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"w": "../elsewhere.safetensors"}}')
    with pytest.raises(CheckpointError, match="must name shard files in the same directory"):
        CheckpointWeights(str(tmp_path))
    (tmp_path / "model.safetensors.index.json").write_text("[1")
    with pytest.raises(CheckpointError, match="not a safetensors index"):
        CheckpointWeights(str(tmp_path))


def test_nan_or_inf_weights(tmp_path):
    values = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    values[1, 2] = np.inf
    values[0, 0] = np.nan
    source = _checkpoint(tmp_path, {"w": values})
    with pytest.raises(CheckpointError, match="tensor 'w' has 2 NaN or Inf values"):
        source.get("w", (3, 4))


def test_float64_overflowing_float32_is_refused(tmp_path):
    source = _checkpoint(tmp_path, {"w": np.array([1.0, 1e300])})
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        source.get("w", (2,))


def test_integer_weights_refused(tmp_path):
    source = _checkpoint(tmp_path, {"w": np.arange(4, dtype=np.int32)})
    with pytest.raises(CheckpointError, match="tensor 'w' has dtype int32, expected a float type"):
        source.get("w", (4,))


def test_missing_extra_and_misshaped_names(tmp_path):
    ones = np.ones((2, 3), np.float32)
    source = _checkpoint(tmp_path, {"a": ones, "b": ones, "h.0.attn.bias": ones})
    source.check_names({"a": (2, 3), "b": (2, 3)})  # the attention-mask buffer is allowed
    with pytest.raises(CheckpointError, match="tensor 'b' is not used by the graph"):
        source.check_names({"a": (2, 3)})
    with pytest.raises(CheckpointError, match="no tensor 'c'"):
        source.check_names({"a": (2, 3), "c": (1,)})
    with pytest.raises(CheckpointError, match=r"tensor 'a' has shape \[2, 3\], expected \[3, 2\]"):
        source.check_names({"a": (3, 2), "b": (2, 3)})


def test_not_a_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="expects a checkpoint directory"):
        CheckpointWeights(str(tmp_path / "f"))


@pytest.mark.parametrize("factor, head_dim", [(32.0, 64), (8.0, 128)])  # Llama-3.2-1B, Llama-3.1-8B
def test_llama3_rope_frequencies_match_transformers(factor, head_dim):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from compiler.weights import rope_inv_freq
    scaling = dict(rope_type="llama3", factor=factor, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=8192)
    config = transformers.LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, head_dim=head_dim,
                                      rope_theta=500000.0, rope_scaling=scaling, max_position_embeddings=131072)
    theirs = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")[0].numpy()
    ours = rope_inv_freq(head_dim, 500000.0, scaling)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)  # float64 here, float32 there
    plain = rope_inv_freq(head_dim, 500000.0, None)
    assert ours[0] == plain[0] == 1.0  # short wavelengths keep their frequency
    np.testing.assert_allclose(ours[-1], plain[-1] / factor)  # the longest are slowed by the factor
