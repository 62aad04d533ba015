"""Read a checkpoint's tokenizer into the data the plan stores, so `cgc run --prompt` needs
nothing but the plan: its tokenizer.json verbatim, or one built with `tokenizers` from
vocab.json + merges.txt (+ added_tokens.json) as a GPT-2 style byte-level BPE.

tokenizer_config.json's `add_bos_token: true` adds a BOS post-processor when tokenizer.json
lacks one (early Llama 3 files); EOS ids come from generation_config.json, else config.json.
"""

import json
import os

from compiler.errors import CheckpointError

MAX_FILE_BYTES = 256 << 20  # a tokenizer file beyond this is not a tokenizer


def read_tokenizer(directory, vocab_size=None):
    """The plan's tokenizer dict for `directory`, or None when it has no tokenizer files.

    `vocab_size`: the model's; a tokenizer producing larger ids is refused."""
    from tokenizers import Tokenizer as HFTokenizer
    tokenizer_json = os.path.join(directory, "tokenizer.json")
    if os.path.exists(tokenizer_json):
        text = _read_text(tokenizer_json)
        tokenizer = _parse(HFTokenizer, text, tokenizer_json)
    elif os.path.exists(os.path.join(directory, "vocab.json")) and os.path.exists(os.path.join(directory, "merges.txt")):
        tokenizer = _from_vocab_merges(directory)
        text = None
    else:
        return None
    if _add_bos(directory, tokenizer):
        text = None
    if text is None:
        text = tokenizer.to_str()
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    if vocab_size is not None and largest >= vocab_size:
        raise CheckpointError(f"{directory}: the tokenizer has ids up to {largest} ({size} tokens) but the model's "
                              f"vocab_size is {vocab_size}")
    return {"tokenizer_json": text, "eos_token_ids": _eos_ids(directory, largest)}


def describe(data):
    """One line saying what tokenizer a plan got (for the compile log)."""
    document = json.loads(data["tokenizer_json"])
    model = document.get("model") or {}
    return (f"tokenizer: {model.get('type', '?')}, {len(model.get('vocab') or ())} tokens, "
            f"{len(document.get('added_tokens') or ())} added tokens, EOS ids {data['eos_token_ids']}")


def _read_text(path):
    try:
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: not a regular file")
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise CheckpointError(f"{path}: {os.path.getsize(path)} bytes, more than a tokenizer file may have "
                                  f"({MAX_FILE_BYTES})")
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _load_json(path, expected=dict):
    try:
        document = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply") from None
    if not isinstance(document, expected):
        raise CheckpointError(f"{path}: expected a JSON {'object' if expected is dict else 'list'}, "
                              f"got {type(document).__name__}")
    return document


def _parse(HFTokenizer, text, path):
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply") from None
    try:
        return HFTokenizer.from_str(text)
    except Exception as exc:  # tokenizers raises plain Exception naming the bad field
        raise CheckpointError(f"{path}: not a tokenizer the `tokenizers` library accepts: "
                              f"{str(exc).splitlines()[0][:200]}") from None


def _from_vocab_merges(directory):
    from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, processors
    vocab_path, merges_path = os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
    vocab = _load_json(vocab_path)
    for token, index in vocab.items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise CheckpointError(f"{vocab_path}: token {token!r} has id {index!r}, expected a non-negative integer")
    merges = []
    for number, line in enumerate(_read_text(merges_path).split("\n"), start=1):
        if not line.strip() or (number == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab:
            raise CheckpointError(f"{merges_path}:{number}: malformed merge {line[:80]!r} "
                                  f"(expected two vocabulary tokens separated by one space)")
        merges.append((pair[0], pair[1]))
    try:
        tokenizer = HFTokenizer(models.BPE(vocab, merges))
    except Exception as exc:
        raise CheckpointError(f"{merges_path}: {str(exc).splitlines()[0][:200]}") from None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    added_path = os.path.join(directory, "added_tokens.json")
    if os.path.exists(added_path):
        added = _load_json(added_path)
        for token, index in sorted(added.items(), key=lambda item: item[1] if isinstance(item[1], int) else -1):
            if not isinstance(index, int) or index != tokenizer.get_vocab_size(with_added_tokens=True):
                raise CheckpointError(f"{added_path}: token {token!r} has id {index!r}; added tokens must take the "
                                      f"ids right after the vocabulary, in order")
            tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)])
    named = [token for token in _special_token_names(directory, vocab) if token in vocab]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in named])
    return tokenizer


def _special_token_names(directory, vocab):
    """Tokens a vocab.json checkpoint calls special (kept whole in text, as transformers does):
    those named by tokenizer_config.json / special_tokens_map.json and the config's BOS/EOS ids."""
    names = []
    for file_name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = os.path.join(directory, file_name)
        if os.path.exists(path):
            config = _load_json(path)
            for key in ("bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens"):
                values = config.get(key)
                for value in values if isinstance(values, list) else [values]:
                    value = value.get("content") if isinstance(value, dict) else value
                    if isinstance(value, str):
                        names.append(value)
    by_id = {index: token for token, index in vocab.items()}
    for file_name in ("generation_config.json", "config.json"):
        path = os.path.join(directory, file_name)
        if os.path.exists(path):
            config = _load_json(path)
            for key in ("bos_token_id", "eos_token_id"):
                values = config.get(key)
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, int) and value in by_id:
                        names.append(by_id[value])
    return names


def _add_bos(directory, tokenizer):
    """Install a BOS post-processor when tokenizer_config.json asks for one and none is there."""
    from tokenizers import processors
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.exists(path):
        return False
    config = _load_json(path)
    if config.get("add_bos_token") is not True:
        return False
    bos = config.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    bos_id = tokenizer.token_to_id(bos) if isinstance(bos, str) else None
    if bos_id is None:
        raise CheckpointError(f"{path}: add_bos_token is true but bos_token {bos!r} is not in the vocabulary")
    full, plain = tokenizer.encode("a").ids, tokenizer.encode("a", add_special_tokens=False).ids
    if full[:1] == [bos_id] and full[1:] == plain:
        return False
    template = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                             special_tokens=[(bos, bos_id)])
    existing = tokenizer.post_processor
    tokenizer.post_processor = processors.Sequence([existing, template]) if existing is not None else template
    return True


def _eos_ids(directory, largest):
    for name in ("generation_config.json", "config.json"):
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        value = _load_json(path).get("eos_token_id")
        if value is None:
            continue
        ids = value if isinstance(value, list) else [value]
        for token in ids:
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= largest:
                raise CheckpointError(f"{path}: eos_token_id {value!r} must be token ids in 0..{largest}")
        return list(ids)
    return []
