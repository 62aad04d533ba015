"""Render a checkpoint's chat template (Jinja text from the plan) into a prompt string.

Templates are untrusted input: they run in jinja2's immutable sandbox (no attribute access to
Python internals, no mutation of the passed objects), with the globals Hugging Face templates
expect: `raise_exception`, `strftime_now`, and a `tojson` that keeps non-ASCII text.
"""

import datetime
import json

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runtime.errors import InputError


class ChatTemplateError(InputError):
    """A template failed to compile or render, or raised on the messages it was given."""


def _raise_exception(message):
    raise ChatTemplateError(f"chat template: {message}")


def _tojson(value, indent=None, ensure_ascii=False):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


class ChatTemplate:
    """A compiled template plus the special-token strings it is rendered with."""

    def __init__(self, source, bos_token="", eos_token=""):
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                    extensions=["jinja2.ext.loopcontrols"])
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise_exception
        environment.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
        try:
            self.template = environment.from_string(source)
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template does not compile: {exc}") from None
        self.bos_token, self.eos_token = bos_token or "", eos_token or ""

    @classmethod
    def from_tokenizer_data(cls, data):
        """The plan's template (plan["tokenizer"]), or None when it stores none."""
        if not data or not data.get("chat_template"):
            return None
        return cls(data["chat_template"], data.get("bos_token", ""), data.get("eos_token", ""))

    def render(self, messages, add_generation_prompt=True):
        """The prompt text of `messages` ([{role, content}]), ending where the assistant speaks."""
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token, eos_token=self.eos_token)
        except ChatTemplateError:
            raise
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template failed: {exc}") from None
        except Exception as exc:  # a template may fail in any way on malformed messages
            raise ChatTemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from None
