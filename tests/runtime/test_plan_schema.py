"""The whole plan body is checked on load, after the checksum: a plan rewritten with a valid
checksum but a bad field is refused with a PlanError naming the field."""

import copy

import msgpack
import pytest

from compiler.compile import CompileOptions, compile_plan
from runtime.errors import PlanError
from runtime.plan import PLAN_VERSION, decode_plan, encode_plan, load_plan


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("plan") / "tiny.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", max_seq=16, prefill_buckets=(4,)))
    loaded = load_plan(path)
    loaded.pop("path")
    return loaded


def _set(body, keys, value):
    body = copy.deepcopy(body)
    target = body
    for key in keys[:-1]:
        target = target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return body


CASES = [
    (("regions", "arena"), -1, "regions.arena: -1 is outside"),
    (("regions", "kv"), "big", "regions.kv: expected an integer"),
    (("regions", "io"), 1 << 50, "regions.io"),
    (("limits", "max_batch"), 0, "limits.max_batch: 0 is outside"),
    (("limits", "prefill_buckets"), [], "limits.prefill_buckets: is empty"),
    (("limits", "prefill_buckets"), [4, 99], "limits.prefill_buckets: 99 is outside 1..16"),
    (("model", "dtype"), "float8", "model.dtype"),
    (("programs", "decode", "launches", 0, "kernel"), 10_000, "launches[0].kernel: 10000 is outside"),
    (("programs", "decode", "launches", 0, "args", 0, "offset"), 1 << 40, "past the end of region"),
    (("programs", "decode", "launches", 0, "args", 0, "strides"), [-1, 1], "strides: -1 is outside"),
    (("programs", "decode", "launches", 0, "args", 0, "strides"), [1], "dimensions but 1 strides"),
    (("programs", "decode", "launches", 0, "args", 0, "region"), "heap", "region: 'heap' is not one of"),
    (("programs", "decode", "launches", 0, "args", 0, "dtype"), "int64", "dtype: 'int64'"),
    (("programs", "decode"), KeyError, "no 'decode' program"),
    (("weights", "table", 0, "offset"), 1 << 40, "past the weights region"),
    (("weights", "table", 0, "nbytes"), 4, "cannot hold shape"),
    (("weights", "blob"), b"short", "weights.blob"),
    (("kernels", 0, "signature"), [["float32"]], "signature: expected [dtype, ndim, ...]"),
    (("kernels",), "nope", "kernels: expected a list"),
    (("generation", "eos", "shape"), [1 << 20], "past the end of region"),
    (("tokenizer",), {"tokenizer_json": 3, "eos_token_ids": []}, "tokenizer.tokenizer_json: expected a string"),
    (("tokenizer",), {"tokenizer_json": "{}", "eos_token_ids": [-1]}, "eos_token_ids: -1"),
    (("tokenizer",), {"tokenizer_json": "{}", "eos_token_ids": [], "colour": "x"}, "unknown key 'colour'"),
    (("passes",), [["a"]], "expected [name, summary]"),
    (("created",), KeyError, "body: lacks created"),
    (("extra",), 1, "unknown key 'extra'"),
]


@pytest.mark.parametrize("keys, value, fragment", CASES, ids=[".".join(map(str, c[0])) + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_field_refused(body, keys, value, fragment):
    with pytest.raises(PlanError) as info:
        decode_plan(encode_plan(_set(body, keys, value)), "x.plan")
    message = str(info.value)
    assert fragment in message and message.startswith("x.plan: plan field") and "\n" not in message


def test_good_body_and_server_tokenizer_keys_pass(body):
    tokenizer = {"tokenizer_json": "{}", "eos_token_ids": [2], "chat_template": "{{ messages }}", "bos_token": None,
                 "eos_token": "</s>"}
    decode_plan(encode_plan(_set(body, ("tokenizer",), tokenizer)), "x.plan")


@pytest.mark.parametrize("name", ["../w.safetensors", "/etc/passwd", "a/b.safetensors", "..", "", ".hidden", "a\0b"])
def test_external_weights_file_must_be_a_plain_name(body, name):
    external = _set(body, ("weights",), {"storage": "external", "file": name, "sha256": "0" * 64,
                                         "table": body["weights"]["table"]})
    with pytest.raises(PlanError, match="not a plain file name beside the plan"):
        decode_plan(encode_plan(external), "x.plan")


def test_deep_nesting_and_huge_lengths_are_refused():
    deep = b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(PlanError, match="truncated or corrupted"):
        decode_plan(deep, "x.plan")
    huge = b"\xdd\xff\xff\xff\xff"  # an array claiming 4 G entries
    with pytest.raises(PlanError, match="truncated or corrupted"):
        decode_plan(huge, "x.plan")
    envelope = {"format": "cgc-plan", "version": PLAN_VERSION, "body_sha256": "0", "body": b""}
    with pytest.raises(PlanError, match="checksum"):
        decode_plan(msgpack.packb(envelope, use_bin_type=True), "x.plan")
