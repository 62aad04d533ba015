"""Storage encodings: bfloat16 rounds to nearest even in blocks of rows, whatever the layout."""

import numpy as np
import pytest

from runtime import dtypes


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_blocked_encoding_equals_one_pass_for_any_layout(monkeypatch, dtype):
    values = np.random.default_rng(5).standard_normal((300, 70)).astype(np.float32)
    values[3, 4], values[7, 1], values[9, 9] = np.nan, np.inf, -np.inf
    whole = [dtypes.from_float32(v, dtype) for v in (values, values.T, values[::2, 5:])]
    monkeypatch.setattr(dtypes, "_CHUNK_ELEMENTS", 256)
    for expected, layout in zip(whole, (values, values.T, values[::2, 5:])):
        blocked = dtypes.from_float32(layout, dtype)
        assert blocked.flags.c_contiguous and blocked.shape == layout.shape
        np.testing.assert_array_equal(blocked.view(np.uint8), expected.view(np.uint8))


def test_bfloat16_rounds_to_nearest_even_and_keeps_nan():
    bits = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x7F800000, 0x7FC00001], dtype=np.uint32)
    encoded = dtypes.from_float32(bits.view(np.float32), "bfloat16")
    assert encoded.tolist() == [0x3F80, 0x3F82, 0x3F81, 0x7F80, 0x7FC0]
    np.testing.assert_array_equal(dtypes.to_float32(encoded[:3], "bfloat16"),
                                  (bits[:3] & 0xFFFF0000).view(np.float32) + [0, 2 ** -7, 2 ** -7])
