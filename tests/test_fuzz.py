"""Fuzzing with Hypothesis: corrupted plans, safetensors headers, graph YAML, run arguments and
tokenizer input. Every outcome is one of our clean errors (a CgcError, one line) or a correct
result, within a time bound. Derandomized and bounded in examples, so CI runs it in seconds.

CGC_FUZZ_EXAMPLES=1000 runs each property longer (default 100).

Not fuzzed: a plan's per-template kernel constants (e.g. a matmul's eps). The schema checks their
container, not each template's meaning; accidental corruption of them is caught by the checksum.
"""

import copy
import json
import math
import struct
import time

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.compile import CompileOptions, compile_plan
from compiler.errors import CheckpointError
from compiler.graph_loader import load_graph
from compiler.passes import infer_shapes
from compiler.weights import CheckpointWeights
from runtime.errors import CgcError
from runtime.generate import generate
from runtime.numpy_executor import NumpyExecutor
from runtime.plan import PLAN_VERSION, decode_plan, encode_plan, load_plan
from runtime.safetensors_file import SafetensorsFile, SafetensorsFormatError
from runtime.sampling import SamplingParams

FUZZ = settings(max_examples=int(__import__("os").environ.get("CGC_FUZZ_EXAMPLES", 100)), derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TIME_BOUND = 5.0  # seconds for one example: anything slower counts as a hang


def _clean(error):
    message = str(error)
    assert message and "\n" not in message, repr(message)


class _Timed:
    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        assert time.perf_counter() - self.started < TIME_BOUND, "took longer than the time bound"
        return False


@pytest.fixture(scope="module")
def plan_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "tiny.plan"
    compile_plan("llama", str(path), CompileOptions(preset="tiny", max_seq=16, prefill_buckets=(4,),
                                                     overrides={"num_hidden_layers": 1}))
    return path.read_bytes()


@pytest.fixture(scope="module")
def body(plan_bytes):
    return decode_plan(plan_bytes, "tiny.plan")


@pytest.fixture(scope="module")
def executor(body):
    return NumpyExecutor(copy.deepcopy(body))


# --- plans ---------------------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_corrupted_plan_bytes(plan_bytes, data):
    raw = bytearray(plan_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        at = data.draw(st.integers(0, 64))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=32))
    with _Timed():
        try:
            decode_plan(bytes(raw), "x.plan")
        except CgcError as error:
            _clean(error)


def _paths(value, prefix=()):
    """Paths to every value in a plan body, except per-template constants, config and recipes."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("constants", "config", "recipe", "blob", "image"):
                yield prefix + (key,)
                continue
            yield prefix + (key,)
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield prefix + (index,)
            yield from _paths(item, prefix + (index,))


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 64 - 1), st.sampled_from([0, -1, 1, 2 ** 31]),
                 st.floats(allow_nan=True), st.text(max_size=8), st.binary(max_size=8),
                 st.lists(st.integers(-3, 5), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2))


@FUZZ
@given(data=st.data())
def test_tampered_plan_fields_with_valid_checksum(body, data):
    paths = [p for p in _paths(body) if p[-1] not in ("constants", "config", "recipe")]
    path = data.draw(st.sampled_from(paths))
    tampered = copy.deepcopy(body)
    target = tampered
    for key in path[:-1]:
        target = target[key]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = data.draw(JUNK)
    with _Timed():
        try:
            loaded = decode_plan(encode_plan(tampered), "x.plan")
        except CgcError as error:
            _clean(error)
            return
        try:  # the schema let it through: the plan must still run or refuse cleanly
            result = generate(NumpyExecutor(loaded), [[1, 2, 3]], 2)
            assert all(0 <= t < loaded["model"]["config"]["vocab_size"] for t in result.tokens[0])
        except CgcError as error:
            _clean(error)


# --- safetensors ---------------------------------------------------------------------------------

ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "F16", "BF16", "I32", "F64", "U8", "F8_E4M3", "X", 3]),
    "shape": st.one_of(st.lists(st.integers(-2, 6), max_size=3), st.just("a"), st.just([2 ** 62, 2 ** 62])),
    "data_offsets": st.one_of(st.lists(st.integers(-4, 200), min_size=2, max_size=2), st.just([0])),
})


@FUZZ
@given(header=st.dictionaries(st.text(min_size=1, max_size=4), ENTRY, max_size=3),
       data_size=st.integers(0, 256), length_delta=st.sampled_from([0, 0, 0, -3, 5, 2 ** 40]))
def test_safetensors_headers(tmp_path_factory, header, data_size, length_delta):
    body = json.dumps(header).encode()
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    path.write_bytes(struct.pack("<Q", max(len(body) + length_delta, 0)) + body + bytes(range(256))[:data_size])
    with _Timed():
        try:
            handle = SafetensorsFile(str(path))
        except SafetensorsFormatError as error:
            _clean(error)
            return
        source = CheckpointWeights.__new__(CheckpointWeights)
        source.directory, source.files = str(path.parent), {key: handle for key in handle.keys()}
        for key in handle.keys():
            shape = handle.shape(key)
            try:
                values = source.get(key, shape)
            except CheckpointError as error:
                _clean(error)
                continue
            assert values.shape == tuple(shape) and np.isfinite(values).all()


# --- graph YAML ----------------------------------------------------------------------------------

GOOD = """graph: toy
config: {d: 48, vocab: 300, heads: 3}
derived: {hd: d // heads}
forward:
  - {op: embed, tokens: tokens, weight: wte, vocab: vocab, dim: d, out: x}
  - repeat: 2
    body:
      - {op: rmsnorm, x: x, weight: "n.{layer}", eps: 1.0e-5, out: h}
      - {op: linear, x: h, weight: "q.{layer}", features: d, out: q}
      - {op: add, a: x, b: q, out: x}
  - {op: linear, x: x, weight: head.weight, features: vocab, out: logits}
outputs: {logits: logits}
"""
SCALARS = ["48", "300", "3", "1.0e-5", "2", "d // heads", "x", "h", "q", "vocab", "d", "embed", "linear", "logits"]
YAML_JUNK = st.one_of(
    st.sampled_from(["0", "-1", "9**9**9", "2**80", "'a' * 10**9", "d.__class__", "[1, 2]", "{a: 1}", "null",
                     "''", "'{d:>99999}'", ".nan", "-.inf", "1e400", "true", "&a [*a]", "d / 0", "'{layer.x}'",
                     "[" * 50, "\"\\xff\"", "99999999999999999999"]),
    st.integers(-10, 10 ** 12).map(str), st.text(alphabet="d+*-/()0123456789 ", max_size=20))


@FUZZ
@given(data=st.data())
def test_graph_yaml(tmp_path_factory, data):
    text = GOOD
    for _ in range(data.draw(st.integers(1, 3))):
        old = data.draw(st.sampled_from([s for s in SCALARS if s in text] or ["48"]))
        occurrence = data.draw(st.integers(0, max(text.count(old) - 1, 0)))
        start = -1
        for _ in range(occurrence + 1):
            start = text.find(old, start + 1)
        if start >= 0:
            text = text[:start] + data.draw(YAML_JUNK) + text[start + len(old):]
    path = tmp_path_factory.mktemp("yaml") / "g.yaml"
    path.write_text(text)
    with _Timed():
        try:
            graph = infer_shapes.run(load_graph(str(path)))
        except CgcError as error:
            _clean(error)
            return
        assert graph.tensors["logits"].shape[1] >= 1


# --- run arguments -------------------------------------------------------------------------------

NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2 ** 40, 2 ** 40), st.just(0),
                   st.text(max_size=2), st.none())
TOKEN = st.one_of(st.integers(-5, 1100), st.integers(2 ** 31 - 2, 2 ** 33), st.floats(-1, 2000), st.booleans(),
                  st.text(max_size=2))


@FUZZ
@given(prompts=st.one_of(st.lists(st.lists(TOKEN, max_size=6), max_size=3), st.text(max_size=4),
                         st.lists(st.integers(0, 10), max_size=3)),
       new_tokens=st.one_of(st.integers(-2, 6), st.floats(0, 4), st.booleans()),
       temperature=NUMBER, top_k=NUMBER, top_p=NUMBER, penalty=NUMBER,
       seed=st.one_of(st.none(), st.integers(-5, 2 ** 33)))
def test_run_arguments(executor, prompts, new_tokens, temperature, top_k, top_p, penalty, seed):
    sampling = SamplingParams(temperature, top_k, top_p, penalty, seed)
    with _Timed():
        try:
            result = generate(executor, prompts, new_tokens, sampling=sampling)
        except CgcError as error:
            _clean(error)
            return
    vocab = executor.plan["model"]["config"]["vocab_size"]
    assert len(result.tokens) == len(prompts)
    for tokens in result.tokens:
        assert len(tokens) <= new_tokens and all(0 <= t < vocab for t in tokens)
    assert math.isfinite(sampling.temperature) and sampling.temperature >= 0


# --- tokenizer input -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from compiler.tokenizer_import import read_tokenizer
    from runtime.tokenizer import Tokenizer
    from tests.runtime.test_tokenizer import _train
    directory = tmp_path_factory.mktemp("tok")
    _train(directory)
    return Tokenizer(read_tokenizer(str(directory)))


@FUZZ
@given(text=st.text(max_size=64), ids=st.lists(st.one_of(st.integers(-3, 2 ** 32), st.floats(), st.booleans()),
                                                 max_size=8), max_tokens=st.one_of(st.none(), st.integers(0, 8)))
def test_tokenizer_input(tokenizer, text, ids, max_tokens):
    with _Timed():
        try:
            encoded = tokenizer.encode(text, max_tokens=max_tokens)
            assert max_tokens is None or len(encoded) <= max_tokens
            assert tokenizer.decode(encoded) == text
        except CgcError as error:
            _clean(error)
        try:
            assert isinstance(tokenizer.decode(ids), str)
        except CgcError as error:
            _clean(error)


def test_plan_loads_after_fuzzing_left_it_alone(tmp_path, plan_bytes):
    path = tmp_path / "x.plan"
    path.write_bytes(plan_bytes)
    assert load_plan(str(path))["model"]["name"] == "llama"
    assert msgpack.unpackb(plan_bytes, raw=False)["version"] == PLAN_VERSION
