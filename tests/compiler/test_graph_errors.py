"""Bad graph input gets a one-line GraphError naming the file, line and op or symbol."""

import pytest

from compiler.errors import GraphError
from compiler.expr import ExprError, evaluate
from compiler.graph_loader import load_graph
from compiler.passes import infer_shapes

GOOD = """graph: toy
config: {d: 48, vocab: 300}
forward:
  - {op: embed, tokens: tokens, weight: wte, vocab: vocab, dim: d, out: x}
  - {op: rmsnorm, x: x, weight: norm.weight, eps: 1.0e-5, out: h}
  - {op: linear, x: h, weight: head.weight, features: vocab, out: logits}
outputs: {logits: logits}
"""


def _write(tmp_path, text):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return str(path)


def _error(tmp_path, text, **kwargs):
    path = _write(tmp_path, text)
    with pytest.raises(GraphError) as info:
        infer_shapes.run(load_graph(path, **kwargs))
    message = str(info.value)
    assert "\n" not in message
    return path, message


def test_good_graph_loads(tmp_path):
    graph = infer_shapes.run(load_graph(_write(tmp_path, GOOD)))
    assert graph.tensors["logits"].shape == ("T", 300)
    assert graph.weights["head.weight"].shape == (300, 48)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path, message = _error(tmp_path, GOOD.replace("  - {op: rmsnorm", "  - op: rmsnorm: bad"))
    assert message.startswith(f"{path}:5: malformed YAML")


def test_unknown_op(tmp_path):
    path, message = _error(tmp_path, GOOD.replace("op: rmsnorm", "op: frobnicate"))
    assert f"{path}:5" in message and "unknown op 'frobnicate'" in message


def test_shape_mismatch_names_op(tmp_path):
    text = GOOD.replace("  - {op: linear", "  - {op: add, a: x, b: y, out: z}\n  - {op: linear")
    text = text.replace("  - {op: rmsnorm", "  - {op: linear, x: x, weight: p.weight, features: 40, out: y}\n  - {op: rmsnorm")
    path, message = _error(tmp_path, text)
    assert f"{path}:7" in message and "op 'add'" in message and "shape mismatch" in message


def test_undefined_symbol(tmp_path):
    path, message = _error(tmp_path, GOOD.replace("features: vocab", "features: vocab_size"))
    assert f"{path}:6" in message and "undefined symbol 'vocab_size'" in message


def test_undefined_tensor(tmp_path):
    path, message = _error(tmp_path, GOOD.replace("x: h,", "x: hidden,"))
    assert f"{path}:6" in message and "undefined tensor 'hidden'" in message


def test_unknown_preset(tmp_path):
    path, message = _error(tmp_path, GOOD, preset="huge")
    assert path in message and "unknown preset 'huge'" in message


def test_unknown_override_key(tmp_path):
    _, message = _error(tmp_path, GOOD, overrides={"layers": 3})
    assert "unknown config key 'layers'" in message


def test_heads_must_divide(tmp_path):
    with pytest.raises(GraphError, match="kv_heads 4 must divide heads 6"):
        infer_shapes.run(load_graph("llama", preset="tiny", overrides={"num_key_value_heads": 4}))


def test_expression_language_refuses_calls():
    assert evaluate("a // b + 1", {"a": 7, "b": 2}) == 4
    assert evaluate("'x' if t else 'y'", {"t": False}) == "y"
    with pytest.raises(ExprError, match="unsupported"):
        evaluate("__import__('os')", {})


@pytest.mark.parametrize("expression, fragment", [
    ("9**9**9", "exponent"), ("2**64", "out of range"), ("'a' * 10**9", "arithmetic on str"),
    ("d.__class__", "unsupported expression"), ("len(d)", "unsupported expression"), ("1/0", "division by zero"),
    ("(" * 300 + "1" + ")" * 300, "characters"), ("+".join(["d"] * 150), "terms"), ("10 ** 18 * 10", "out of range"),
])
def test_bounded_expressions(expression, fragment):
    with pytest.raises(ExprError, match=fragment):
        evaluate(expression, {"d": 48})


def test_expressions_still_compute():
    assert evaluate("n // h if n else 4 * h", {"n": 48, "h": 3}) == 16
    assert evaluate("'a.weight' if t else 'b.weight'", {"t": False}) == "b.weight"


@pytest.mark.parametrize("old, new, fragment", [
    ("config: {d: 48, vocab: 300}", "config: [48, 300]", "'config' must be a mapping, got list"),
    ("config: {d: 48, vocab: 300}", "config: {d: 48, vocab: 300, d: 3}", "duplicate key 'd'"),
    ("config: {d: 48, vocab: 300}", "config: {d: [48], vocab: 300}", "attribute 'dim': must be a positive integer"),
    ("config: {d: 48, vocab: 300}", "config: {d: 48, vocab: 0}", "attribute 'vocab': must be a positive integer up to"),
    ("config: {d: 48, vocab: 300}", "config: {d: '48', vocab: 300}", "must be a positive integer, got str"),
    ("config: {d: 48, vocab: 300}", "config: {d: 48.5, vocab: 300}", "must be a positive integer, got float"),
    ("config: {d: 48, vocab: 300}", "config: {d: 99999999999, vocab: 300}", "up to 16777216"),
    ("eps: 1.0e-5", "eps: -1.0e-5", "attribute 'eps' must be a positive number"),
    ("eps: 1.0e-5", "eps: [1]", "attribute 'eps' must be a positive number"),
    ("op: rmsnorm", "op: [rmsnorm]", "unknown op"),
    ("x: h,", "x: [h],", "field 'x' must be a name"),
    ("weight: head.weight", "weight: '{d.__class__}'", "is not a plain symbol name"),
    ("weight: head.weight", "weight: '{d:>999999999}'", "is not a plain symbol name"),
    ("out: logits}", "out: [1]}", "field 'out' must"),
    ("outputs: {logits: logits}", "outputs: {logits: [logits]}", "names undefined tensor"),
    ("outputs: {logits: logits}", "outputs: [logits]", "'outputs' must be a mapping"),
], ids=["config-list", "duplicate-key", "list-dim", "vocab-0", "str-dim", "float-dim", "huge-dim", "negative-eps",
        "list-eps", "list-op", "list-input", "format-attr", "format-pad", "int-out", "list-output", "outputs-list"])
def test_wrong_types_anywhere(tmp_path, old, new, fragment):
    assert old in GOOD
    _, message = _error(tmp_path, GOOD.replace(old, new, 1))
    assert fragment in message, message


def test_repeat_block_checked(tmp_path):
    body = "  - repeat: {n}\n    body:\n      - {{op: rmsnorm, x: x, weight: 'r.{{layer}}', eps: 1.0e-5, out: x}}\n"
    for count, fragment in (("9**9**9", "exponent"), ("100000", "integer in 0..4096"), ("-1", "integer in 0..4096")):
        text = GOOD.replace("  - {op: rmsnorm", body.format(n=count) + "  - {op: rmsnorm")
        assert fragment in _error(tmp_path, text)[1]
    text = GOOD.replace("  - {op: rmsnorm", body.format(n=2).replace("    body:", "    bodyy: 1\n    body:") + "  - {op: rmsnorm")
    assert "repeat block has unknown field 'bodyy'" in _error(tmp_path, text)[1]


def test_yaml_alias_bomb_and_recursion_fail_fast(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    _, message = _error(tmp_path, bomb + GOOD)
    assert "expands to more than" in message
    _, message = _error(tmp_path, "r: &r [*r]\n" + GOOD)
    assert "malformed YAML" in message


def test_non_utf8_and_non_regular_graph_files(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(GOOD.encode().replace(b"toy", b"t\xffy"))
    with pytest.raises(GraphError, match=r"bad.yaml:1: graph file is not UTF-8"):
        load_graph(str(path))
    with pytest.raises(GraphError, match="not a regular file"):
        load_graph(str(tmp_path))


@pytest.mark.parametrize("content, fragment", [
    ("[1, 2]", "config.json must be a JSON object, got list"),
    ('{"n_layer": [2, 3]}', "'n_layer' is list"),
    ('{"n_layer": 1e999}', "'n_layer'"),
    ('{"n_embd": 48,', "malformed JSON"),
    (b'{"n_embd": "\xff"}', "not UTF-8"),
    ('{"n_embd": 0}', "must be a positive integer"),
], ids=["list", "list-value", "inf", "truncated", "utf8", "zero-width"])
def test_garbled_checkpoint_config(tmp_path, content, fragment):
    (tmp_path / "config.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(GraphError) as info:
        infer_shapes.run(load_graph("gpt2", checkpoint=str(tmp_path)))
    assert fragment in str(info.value) and "\n" not in str(info.value)
