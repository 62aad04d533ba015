"""server.chat_template: templates render in jinja2's immutable sandbox with the checkpoint's
special tokens and add_generation_prompt; a template's own errors and escapes become
ChatTemplateError (a user error), never a crash or a side effect."""

import pytest

from server.chat_template import ChatTemplate, ChatTemplateError
from tests.server.conftest import CHATML

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ü"}]


def test_chatml_renders_with_the_generation_prompt():
    text = ChatTemplate(CHATML).render(MESSAGES)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi ü<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert not ChatTemplate(CHATML).render(MESSAGES, add_generation_prompt=False).endswith("assistant\n")


def test_special_tokens_and_tojson():
    template = ChatTemplate("{{ bos_token }}{{ messages[-1]['content'] | tojson }}{{ eos_token }}", "<s>", "</s>")
    assert template.render(MESSAGES) == '<s>"Hi ü"</s>'


def test_raise_exception_is_a_user_error():
    template = ChatTemplate("{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}"
                            "{% endif %}")
    with pytest.raises(ChatTemplateError, match="chat template: first must be user"):
        template.render(MESSAGES)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # escaping to Python internals
    "{% set _ = messages.append({'role': 'x'}) %}",  # mutating the caller's objects
    "{{ messages[0].content.nonexistent() }}",
])
def test_sandbox_refuses_escapes(source):
    with pytest.raises(ChatTemplateError):
        ChatTemplate(source).render(MESSAGES)
    assert len(MESSAGES) == 2


def test_template_that_does_not_compile():
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for m in messages %}")


def test_from_tokenizer_data():
    assert ChatTemplate.from_tokenizer_data({"vocab": {}}) is None
    assert ChatTemplate.from_tokenizer_data(None) is None
    template = ChatTemplate.from_tokenizer_data({"chat_template": "{{ eos_token }}", "eos_token": "<e>"})
    assert template.render(MESSAGES) == "<e>"
