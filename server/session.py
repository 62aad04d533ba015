"""What both the server and the chat need from a plan: executor, tokenizer, chat template."""

import os

from runtime.errors import CgcError
from runtime.session import open_plan
from runtime.tokenizer import Tokenizer


def open_model(plan_path, device="auto", chat_template_path=None):
    """(executor, tokenizer or None, ChatTemplate or None) of the plan at `plan_path`."""
    from server.chat_template import ChatTemplate
    executor = open_plan(plan_path, device=device)
    data = executor.plan.get("tokenizer")
    tokenizer = Tokenizer(data) if data else None
    if chat_template_path is not None:
        try:
            with open(chat_template_path, encoding="utf-8") as handle:
                source = handle.read()
        except OSError as exc:
            raise CgcError(f"{chat_template_path}: cannot read the chat template: {exc.strerror}") from None
        template = ChatTemplate(source, (data or {}).get("bos_token", ""), (data or {}).get("eos_token", ""))
    else:
        template = ChatTemplate.from_tokenizer_data(data)
    return executor, tokenizer, template


def model_name(plan_path):
    """The name a plan is served under by default: its file name without `.plan`."""
    name = os.path.basename(plan_path)
    return name[:-len(".plan")] if name.endswith(".plan") else name
