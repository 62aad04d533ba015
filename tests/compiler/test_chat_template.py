"""compiler.chat_template: a checkpoint's chat template and special-token strings, from each
place Hugging Face checkpoints keep them, reach the plan's tokenizer data."""

import json

import pytest

from compiler.chat_template import read_chat_template
from compiler.errors import CheckpointError

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def _write(directory, name, document):
    (directory / name).write_text(document if isinstance(document, str) else json.dumps(document))


def test_tokenizer_config_template_and_tokens(tmp_path):
    _write(tmp_path, "tokenizer_config.json", {"chat_template": TEMPLATE, "bos_token": "<s>",
                                               "eos_token": {"content": "</s>", "special": True}})
    assert read_chat_template(str(tmp_path)) == {"chat_template": TEMPLATE, "bos_token": "<s>", "eos_token": "</s>"}


def test_named_templates_take_the_default(tmp_path):
    _write(tmp_path, "tokenizer_config.json", {"chat_template": [{"name": "tool_use", "template": "x"},
                                                                 {"name": "default", "template": TEMPLATE}]})
    assert read_chat_template(str(tmp_path)) == {"chat_template": TEMPLATE}


def test_jinja_file_wins_over_the_config(tmp_path):
    _write(tmp_path, "tokenizer_config.json", {"chat_template": "old", "eos_token": "<|im_end|>"})
    _write(tmp_path, "chat_template.jinja", TEMPLATE)
    assert read_chat_template(str(tmp_path)) == {"chat_template": TEMPLATE, "eos_token": "<|im_end|>"}


def test_chat_template_json(tmp_path):
    _write(tmp_path, "chat_template.json", {"chat_template": TEMPLATE})
    assert read_chat_template(str(tmp_path)) == {"chat_template": TEMPLATE}


def test_no_template_no_fields(tmp_path):
    assert read_chat_template(str(tmp_path)) == {}
    _write(tmp_path, "tokenizer_config.json", {"bos_token": None, "model_max_length": 10})
    assert read_chat_template(str(tmp_path)) == {}


@pytest.mark.parametrize("document, message", [
    ('{"chat_template": "x",\n "eos_token": }', "tokenizer_config.json:2: malformed JSON"),
    ({"chat_template": [{"name": "tool_use", "template": "x"}]}, "lists ['tool_use'] but no 'default'"),
    ({"chat_template": 3}, "chat_template is a int, expected text"),
])
def test_bad_config_names_the_file(tmp_path, document, message):
    _write(tmp_path, "tokenizer_config.json", document)
    with pytest.raises(CheckpointError, match=message.replace("[", "\\[").replace("]", "\\]")):
        read_chat_template(str(tmp_path))


def test_compiled_plan_stores_the_template(plan):
    assert plan["tokenizer"]["chat_template"].startswith("{% for message in messages %}")
    assert plan["tokenizer"]["eos_token"] == "<|im_end|>" and "bos_token" not in plan["tokenizer"]


@pytest.fixture
def plan(tmp_path):
    from compiler.compile import CompileOptions, compile_plan
    from runtime.plan import load_plan
    pytest.importorskip("tokenizers")
    from tests.server.conftest import _tokenizer_dir
    vocab = _tokenizer_dir(tmp_path)
    path = str(tmp_path / "t.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", overrides={"vocab_size": vocab}, max_seq=16,
                                               prefill_buckets=(8,), tokenizer=str(tmp_path)))
    return load_plan(path)
