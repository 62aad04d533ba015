"""Safetensors files are read through the `safetensors` package, bfloat16 included."""

import json
import struct

import numpy as np
import pytest

from runtime.dtypes import to_float32
from runtime.safetensors_file import SafetensorsFile, SafetensorsFormatError, write_safetensors


def test_bfloat16_float16_float32_read_as_torch_wrote_them(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    generator = torch.Generator().manual_seed(1)
    tensors = {"bf16": torch.randn(5, 7, generator=generator).to(torch.bfloat16),
               "f16": torch.randn(3, 2, generator=generator).to(torch.float16),
               "f32": torch.randn(11, generator=generator)}
    save_file(tensors, str(tmp_path / "m.safetensors"))
    handle = SafetensorsFile(str(tmp_path / "m.safetensors"))
    assert sorted(handle.keys()) == ["bf16", "f16", "f32"]
    for name, tensor in tensors.items():
        dtype = handle.dtype(name)
        assert handle.shape(name) == tuple(tensor.shape)
        np.testing.assert_array_equal(to_float32(handle.array(name), dtype), tensor.float().numpy())


def test_streamed_writer_output_is_valid_for_the_library(tmp_path):
    from safetensors.numpy import load_file
    rng = np.random.default_rng(0)
    arrays = {"a": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float16)}
    specs = {name: (str(array.dtype), array.shape) for name, array in arrays.items()}
    write_safetensors(str(tmp_path / "w.safetensors"), specs, iter(arrays.values()))
    loaded = load_file(str(tmp_path / "w.safetensors"))
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)


def _raw(path, header, data):
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return str(path)


@pytest.mark.parametrize("header, data, fragment", [
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "invalid"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "not a valid safetensors"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "not a valid safetensors"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "not a valid safetensors"),
], ids=["shape-vs-offsets", "truncated-data", "overlap", "negative-dim"])
def test_bad_headers_are_refused(tmp_path, header, data, fragment):
    with pytest.raises(SafetensorsFormatError, match=fragment) as info:
        SafetensorsFile(_raw(tmp_path / "x.safetensors", header, data))
    assert "x.safetensors" in str(info.value) and "\n" not in str(info.value)


def test_huge_header_length_and_non_files_are_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(SafetensorsFormatError, match="not a valid safetensors"):
        SafetensorsFile(str(path))
    with pytest.raises(SafetensorsFormatError, match="not a regular file"):
        SafetensorsFile(str(tmp_path))


def test_unsupported_dtype_named(tmp_path):
    handle = SafetensorsFile(_raw(tmp_path / "x.safetensors",
                                  {"a": {"dtype": "F8_E5M2", "shape": [2], "data_offsets": [0, 2]}}, b"ab"))
    with pytest.raises(SafetensorsFormatError, match="tensor 'a' has unsupported dtype F8_E5M2"):
        handle.dtype("a")


def test_float8_e4m3_reads_as_its_bytes(tmp_path):
    handle = SafetensorsFile(_raw(tmp_path / "x.safetensors",
                                  {"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, bytes([0x38, 0xC0])))
    assert handle.dtype("a") == "float8_e4m3"
    assert to_float32(handle.array("a"), "float8_e4m3").tolist() == [1.0, -2.0]
