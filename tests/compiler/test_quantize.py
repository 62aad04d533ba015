"""compiler/quantize.py and runtime/quant.py: the quantized formats, their rounding and packing."""

import numpy as np
import pytest

from compiler.quantize import quantize
from runtime.quant import dequantize, e4m3_decode, e4m3_encode, pack_int4, unpack_int4

torch = pytest.importorskip("torch")


def test_e4m3_encoding_equals_torch_float8():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(100_000).astype(np.float32) * 40,
                             np.float32([0.0, -0.0, 448.0, -448.0, 2.0 ** -9, 3 * 2.0 ** -10, 1e-9])])
    expected = torch.from_numpy(values).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    np.testing.assert_array_equal(e4m3_encode(values), expected)
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(e4m3_decode(codes), torch.from_numpy(codes).view(torch.float8_e4m3fn).float().numpy())
    assert e4m3_encode(np.float32([1000.0, -1000.0])).tolist() == [0x7E, 0xFE]  # saturates at +-448


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_int4_packing_round_trips_with_the_even_k_low(layout):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, size=(64, 24) if layout == "in_out" else (24, 64)).astype(np.uint8)
    packed = pack_int4(codes, layout)
    np.testing.assert_array_equal(unpack_int4(packed, layout), codes)
    first = packed[0, 0]
    pair = (codes[0, 0], codes[1, 0]) if layout == "in_out" else (codes[0, 0], codes[0, 1])
    assert (first & 0xF, first >> 4) == pair


@pytest.mark.parametrize("mode", ["int8", "int4", "fp8"])
@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_quantize_then_dequantize_stays_within_half_a_step(mode, layout):
    rng = np.random.default_rng(2)
    weight = (0.05 * rng.standard_normal((256, 96))).astype(np.float32)  # [K, N]
    stored = weight if layout == "in_out" else np.ascontiguousarray(weight.T)
    group = 64 if mode == "int4" else None
    parts = quantize(mode, layout, stored, group)
    restored = dequantize(mode, layout, parts["codes"], parts["scale"], parts.get("min"), group)
    restored = restored if layout == "in_out" else restored.T
    if mode == "int4":
        steps = np.repeat(parts["scale"] if layout == "in_out" else parts["scale"].T, group, axis=0)
        assert parts["codes"].dtype == np.uint8 and parts["codes"].size == weight.size // 2
    else:
        scale = parts["scale"]
        steps = np.broadcast_to(scale[None, :], weight.shape) * (32 if mode == "fp8" else 1)
        assert parts["codes"].dtype == (np.int8 if mode == "int8" else np.uint8)
    assert np.all(np.abs(restored - weight) <= 0.5 * steps * (1 + 1e-5) + 1e-9)
    relative = np.abs(restored - weight).max() / np.abs(weight).max()
    assert 0 < relative < {"int8": 0.01, "fp8": 0.07, "int4": 0.1}[mode]


def test_int4_scales_round_to_their_stored_dtype_before_the_codes_are_chosen():
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((128, 16)).astype(np.float32)
    parts = quantize("int4", "in_out", weight, 32, "float16")
    assert np.array_equal(parts["scale"], parts["scale"].astype(np.float16).astype(np.float32))
    restored = dequantize("int4", "in_out", parts["codes"], parts["scale"], parts["min"], 32)
    steps = np.repeat(parts["scale"], 32, axis=0)
    assert np.all(np.abs(restored - weight) <= 0.5 * steps * (1 + 1e-3) + 1e-6)


@pytest.mark.parametrize("mode", ["int8", "int4", "fp8"])
def test_blocks_of_output_channels_give_the_whole_weight_s_parts(monkeypatch, mode):
    """Large weights quantize a block of channels at a time (no full-size temporaries); the
    layouts [K, N] and its transpose [N, K] hold the same parts, transposed."""
    from compiler import quantize as module
    weight = np.random.default_rng(4).standard_normal((128, 40)).astype(np.float32)  # [K, N]
    whole = quantize(mode, "in_out", weight, 32)
    monkeypatch.setattr(module, "BLOCK_COLUMNS", 7)
    for layout, stored in (("in_out", weight.T.copy().T), ("out_in", np.ascontiguousarray(weight.T))):
        blocked = quantize(mode, layout, stored, 32)
        for name, part in whole.items():
            other = blocked[name]
            if layout == "out_in" and name == "codes" and mode == "int4":
                other = pack_int4(unpack_int4(other, "out_in").T, "in_out")
            elif layout == "out_in":
                other = other.T
            np.testing.assert_array_equal(other, part)
