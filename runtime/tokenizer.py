"""Byte-level BPE tokenizer (GPT-2, Llama 3, Qwen) over the data a plan stores; NumPy-free, no deps.

Python's `re` lacks \\p{..} classes, so patterns are translated: \\p{L} -> letters
([^\\W\\d_]), \\p{N} -> digits. That matches the reference tokenizers on letters and ASCII
digits; other Unicode numerals may split differently.
"""

import re

from runtime.errors import InputError


def _bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes)}


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {char: byte for byte, char in BYTE_TO_CHAR.items()}


def _negated_class(match):
    body = match.group(1)
    if "\\p{" not in body:
        return match.group(0)
    excludes_letters, excludes_numbers = "\\p{L}" in body, "\\p{N}" in body
    rest = body.replace("\\p{L}", "").replace("\\p{N}", "")
    options = [f"[^{rest}\\w]", "_"]  # \w is letters, digits and underscore
    if not excludes_numbers:
        options.append("\\d")
    if not excludes_letters:
        options.append("[^\\W\\d_]")
    return "(?:" + "|".join(options) + ")"


def translate_pattern(pattern):
    """A `re`-compatible version of a tokenizer regex written with \\p{L} / \\p{N} classes."""
    out = re.sub(r"\[\^((?:\\.|[^\]\\])*)\]", _negated_class, pattern)
    return out.replace("\\p{L}", "[^\\W\\d_]").replace("\\p{N}", "\\d")


class Tokenizer:
    """Encode text to ids and decode ids to text with a plan's byte-level BPE data."""

    def __init__(self, data):
        self.vocab = data["vocab"]
        self.id_to_token = {index: token for token, index in self.vocab.items()}
        self.added = data.get("added_tokens", {})
        self.id_to_token.update({index: token for token, index in self.added.items()})
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(data["merges"])}
        self.ignore_merges = data.get("ignore_merges", False)
        self.add_prefix_space = data.get("add_prefix_space", False)
        self.eos_token_ids = list(data.get("eos_token_ids", []))
        self.pattern = re.compile(translate_pattern(data["pattern"])) if data.get("pattern") else None
        self.special = (re.compile("(" + "|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True)) + ")")
                        if self.added else None)
        self._cache = {}

    def encode(self, text):
        """Token ids of `text` (added/special tokens written literally are kept whole)."""
        if self.add_prefix_space and text and not text.startswith(" "):
            text = " " + text
        ids = []
        pieces = self.special.split(text) if self.special else [text]
        for piece in pieces:
            if not piece:
                continue
            if piece in self.added:
                ids.append(self.added[piece])
                continue
            words = self.pattern.findall(piece) if self.pattern else [piece]
            for word in words:
                ids.extend(self._bpe("".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8"))))
        return ids

    def _bpe(self, word):
        if word in self._cache:
            return self._cache[word]
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            ranked = [(rank, i) for rank, i in ranked if rank is not None]
            if not ranked:
                break
            _, i = min(ranked)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        try:
            ids = [self.vocab[part] for part in parts]
        except KeyError as exc:
            raise InputError(f"text piece {exc.args[0]!r} is not in the tokenizer's vocabulary") from None
        self._cache[word] = ids
        return ids

    def decode_bytes(self, ids):
        """The raw bytes of `ids` (may end inside a UTF-8 character)."""
        out = bytearray()
        for index in ids:
            token = self.id_to_token.get(int(index))
            if token is None:
                continue
            if token in self.added:
                out += token.encode("utf-8")
            else:
                out += bytes(CHAR_TO_BYTE.get(char, 0x3F) for char in token)
        return bytes(out)

    def decode(self, ids):
        """Text of `ids` (invalid UTF-8 replaced)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class StreamDecoder:
    """Turns a growing list of ids into text chunks, holding back incomplete UTF-8 characters."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending = b""

    def push(self, token_id):
        """Text ready to print after `token_id` ('' while a character is incomplete)."""
        self.pending += self.tokenizer.decode_bytes([token_id])
        try:
            text = self.pending.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and len(self.pending) - exc.start < 4:
                text = self.pending[:exc.start].decode("utf-8", errors="replace")
                self.pending = self.pending[exc.start:]
                return text
            text = self.pending.decode("utf-8", errors="replace")
        self.pending = b""
        return text

    def flush(self):
        """Whatever is still held back."""
        text, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return text
