"""Read a checkpoint's byte-level BPE tokenizer (tokenizer.json, or vocab.json + merges.txt)
into the plain data the plan stores, so `cgc run --prompt` needs nothing but the plan."""

import json
import os

from compiler.errors import CheckpointError

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def read_tokenizer(directory):
    """The tokenizer dict of `directory`, or None when it has no tokenizer files."""
    tokenizer_json = os.path.join(directory, "tokenizer.json")
    if os.path.exists(tokenizer_json):
        data = _from_tokenizer_json(tokenizer_json)
    elif os.path.exists(os.path.join(directory, "vocab.json")) and os.path.exists(os.path.join(directory, "merges.txt")):
        data = _from_vocab_merges(directory)
    else:
        return None
    data["eos_token_ids"] = _eos_ids(directory)
    return data


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None


def _merge_pairs(merges, path):
    pairs = []
    for merge in merges:
        pair = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(pair) != 2:
            raise CheckpointError(f"{path}: malformed merge {merge!r}")
        pairs.append(pair)
    return pairs


def _from_tokenizer_json(path):
    document = _load_json(path)
    model = document.get("model") or {}
    if model.get("type") != "BPE":
        raise CheckpointError(f"{path}: tokenizer model {model.get('type')!r} is not supported (byte-level BPE only)")
    pattern, add_prefix_space, byte_level = _pre_tokenizer(document.get("pre_tokenizer"))
    if not byte_level:
        raise CheckpointError(f"{path}: only byte-level BPE tokenizers are supported")
    return {
        "kind": "byte_bpe",
        "vocab": model["vocab"],
        "merges": _merge_pairs(model.get("merges", []), path),
        "pattern": pattern,
        "add_prefix_space": add_prefix_space,
        "ignore_merges": bool(model.get("ignore_merges", False)),
        "added_tokens": {token["content"]: token["id"] for token in document.get("added_tokens", [])},
    }


def _pre_tokenizer(spec):
    if spec is None:
        return None, False, False
    steps = spec["pretokenizers"] if spec.get("type") == "Sequence" else [spec]
    pattern, add_prefix_space, byte_level = None, False, False
    for step in steps:
        if step.get("type") == "Split":
            regex = step.get("pattern", {})
            pattern = regex.get("Regex") or _escape(regex.get("String", ""))
        elif step.get("type") == "ByteLevel":
            byte_level = True
            add_prefix_space = bool(step.get("add_prefix_space", False))
            if step.get("use_regex", True) and pattern is None:
                pattern = GPT2_PATTERN
    return pattern, add_prefix_space, byte_level


def _escape(text):
    import re
    return re.escape(text)


def _from_vocab_merges(directory):
    vocab = _load_json(os.path.join(directory, "vocab.json"))
    merges_path = os.path.join(directory, "merges.txt")
    with open(merges_path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip() and not line.startswith("#version")]
    added = {}
    special_path = os.path.join(directory, "added_tokens.json")
    if os.path.exists(special_path):
        added = _load_json(special_path)
    return {"kind": "byte_bpe", "vocab": vocab, "merges": _merge_pairs(lines, merges_path), "pattern": GPT2_PATTERN,
            "add_prefix_space": False, "ignore_merges": False, "added_tokens": added}


def _eos_ids(directory):
    ids = []
    for name in ("generation_config.json", "config.json"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            value = _load_json(path).get("eos_token_id")
            if value is not None:
                ids = value if isinstance(value, list) else [value]
                break
    return [int(i) for i in ids]
