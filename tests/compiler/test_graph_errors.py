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
