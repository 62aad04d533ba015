"""External weights stream into the weights region in one read: the streamed image equals the
embedded one for any block size, padded rows included, and a file that does not match the plan
is refused."""

import numpy as np
import pytest

from compiler.compile import CompileOptions, compile_plan
from runtime.errors import PlanError
from runtime.plan import load_plan, weights_image
from runtime.weight_upload import external_weights_path, place_into, stream_weights


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upload")
    paths = {}
    for storage in ("embedded", "external"):
        paths[storage] = str(folder / f"{storage}.plan")
        options = CompileOptions(preset="tiny", dtype="bfloat16", max_seq=40, prefill_buckets=(8,), seed=3,
                                 weights_storage=storage)
        compile_plan("llama", paths[storage], options)
    return {storage: load_plan(path) for storage, path in paths.items()}


def _streamed(plan, block_bytes):
    image = np.zeros(plan["regions"]["weights"], dtype=np.uint8)
    stream_weights(plan, place_into(image), block_bytes)
    return image


@pytest.mark.parametrize("block_bytes", [4096, 1 << 26])
def test_streamed_region_equals_the_embedded_image(plans, block_bytes):
    table = plans["external"]["weights"]["table"]
    assert any(len(e["shape"]) == 2 and e["row_stride"] != e["shape"][1] for e in table)  # padded rows
    expected = np.frombuffer(weights_image(plans["embedded"]), dtype=np.uint8)
    assert expected.any()
    np.testing.assert_array_equal(_streamed(plans["external"], block_bytes), expected)


def _corrupt(plan, tmp_path, change):
    data = bytearray(open(external_weights_path(plan), "rb").read())
    copy = dict(plan, path=str(tmp_path / "copy.plan"))
    (tmp_path / plan["weights"]["file"]).write_bytes(bytes(change(data)))
    return copy


@pytest.mark.parametrize("change, message", [
    (lambda data: data[:-5], "truncated"),
    (lambda data: data + b"\0", "after its last tensor"),
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "sha256 mismatch"),
    (lambda data: data[:8] + data[8:].replace(b'"BF16"', b'"F16" ', 1), "the plan expects"),
    (lambda data: (1 << 40).to_bytes(8, "little") + data[8:], "header claims"),
])
def test_a_file_that_does_not_match_the_plan_is_refused(plans, tmp_path, change, message):
    plan = _corrupt(plans["external"], tmp_path, change)
    with pytest.raises(PlanError, match=message):
        _streamed(plan, 4096)


def test_rows_longer_than_a_block_are_refused(plans):
    with pytest.raises(PlanError, match="rows of"):
        _streamed(plans["external"], 16)
