"""Read a checkpoint's chat template and special-token strings into the plan's tokenizer data.

Hugging Face checkpoints ship the template as Jinja text: `chat_template.jinja` (newer), the
`chat_template` key of `chat_template.json`, or of `tokenizer_config.json` (a string, or a list of
{name, template} of which "default" is taken). `bos_token` / `eos_token` come from
tokenizer_config.json (a string, or an added-token map with `content`). The template is stored as
text and rendered by the server (server/chat_template.py), never here.
"""

import json
import os

from compiler.errors import CheckpointError


def read_chat_template(directory):
    """{chat_template, bos_token, eos_token} of `directory`, each key only when present."""
    config = _load_json(os.path.join(directory, "tokenizer_config.json")) or {}
    fields = {}
    for key in ("bos_token", "eos_token"):
        token = config.get(key)
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            fields[key] = token
    template = _template(directory, config)
    if template is not None:
        fields["chat_template"] = template
    return fields


def _template(directory, config):
    jinja_path = os.path.join(directory, "chat_template.jinja")
    if os.path.exists(jinja_path):
        with open(jinja_path, encoding="utf-8") as handle:
            return handle.read()
    json_path = os.path.join(directory, "chat_template.json")
    template = (_load_json(json_path) or {}).get("chat_template") or config.get("chat_template")
    source = json_path if os.path.exists(json_path) else os.path.join(directory, "tokenizer_config.json")
    if isinstance(template, list):
        named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
        template = named.get("default")
        if template is None:
            raise CheckpointError(f"{source}: chat_template lists {sorted(map(str, named))} but no 'default'")
    if template is not None and not isinstance(template, str):
        raise CheckpointError(f"{source}: chat_template is a {type(template).__name__}, expected text")
    return template


def _load_json(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return document
