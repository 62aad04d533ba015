"""Text <-> token ids through Hugging Face `tokenizers`, from the tokenizer.json a plan stores.

The plan's `tokenizer` field is {tokenizer_json: str, eos_token_ids: [int], and optionally
chat_template, bos_token, eos_token: str or None}. The tokenizer.json carries the checkpoint's
normalizer, pre-tokenizer, model, post-processor (a Llama 3 BOS) and decoder, so encoding and
decoding are exactly the checkpoint's own.
"""

from runtime.errors import InputError, PlanError

MAX_ID = 2 ** 31 - 1


class Tokenizer:
    """Encode text to ids and decode ids to text with a plan's tokenizer data."""

    def __init__(self, data):
        from tokenizers import Tokenizer as HFTokenizer
        if not isinstance(data, dict) or not isinstance(data.get("tokenizer_json"), str):
            raise PlanError("the plan's tokenizer has no tokenizer.json text")
        try:
            self._tokenizer = HFTokenizer.from_str(data["tokenizer_json"])
        except Exception as exc:  # the library raises plain Exception for malformed JSON
            raise PlanError(f"the plan's tokenizer.json is not readable: {str(exc).splitlines()[0][:200]}") from None
        self.eos_token_ids = [int(i) for i in data.get("eos_token_ids") or ()]
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self.bos_token_id = self._prepended_id()
        self._max_token_bytes = None

    def _prepended_id(self):
        """The id the post-processor puts before every text (a Llama 3 BOS), or None."""
        plain = self._tokenizer.encode("a", add_special_tokens=False).ids
        full = self._tokenizer.encode("a", add_special_tokens=True).ids
        return full[0] if len(full) == len(plain) + 1 and full[1:] == plain else None

    def encode(self, text, add_special_tokens=True, max_tokens=None):
        """Token ids of `text`, with the post-processor's special tokens (BOS) unless told not to;
        special tokens written literally in the text are kept whole. With `max_tokens`, a text
        too long for it is refused, before tokenizing when its size alone proves it."""
        if not isinstance(text, str):
            raise InputError(f"text to encode must be a str, got {type(text).__name__}")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InputError(f"text is not valid UTF-8 (lone surrogate at character {exc.start})") from None
        # Each token covers at most max_token_bytes of normalized text; 4x leaves room for
        # normalizers that shrink text (NFC composes accents).
        if max_tokens is not None and size > 4 * self.max_token_bytes() * (max_tokens + 1):
            raise InputError(f"the prompt has {size} bytes, far more than {max_tokens} tokens can hold")
        ids = self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        if max_tokens is not None and len(ids) > max_tokens:
            raise InputError(f"the prompt has {len(ids)} tokens, more than the {max_tokens} allowed")
        return ids

    def max_token_bytes(self):
        """UTF-8 bytes of the longest token text (an upper bound of the input one token covers)."""
        if self._max_token_bytes is None:
            self._max_token_bytes = max((len(token.encode("utf-8", "replace"))
                                         for token in self._tokenizer.get_vocab(with_added_tokens=True)), default=1)
        return self._max_token_bytes

    def decode(self, ids):
        """Text of `ids` (special tokens kept; bytes that do not form UTF-8 become U+FFFD)."""
        return self._tokenizer.decode(check_ids(ids), skip_special_tokens=False)


def check_ids(ids):
    """`ids` as a list of ints in 0..2**31-1; InputError for anything else (floats, bools, ...)."""
    out = []
    for token in ids:
        if isinstance(token, bool) or not hasattr(token, "__index__"):
            raise InputError(f"token ids must be integers, got {token!r}")
        token = int(token)
        if not 0 <= token <= MAX_ID:
            raise InputError(f"token id {token} is outside 0..{MAX_ID}")
        out.append(token)
    return out


class StreamDecoder:
    """Turns ids arriving one at a time into text chunks; a chunk never ends inside a character.

    Each push decodes the ids since the last emitted chunk together with the ids before it (the
    prefix), so decoders that look at neighbours (spaces, byte fallback) see enough context;
    text ending in U+FFFD is held back until the next id completes the character.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids = []
        self.prefix = 0  # ids[prefix:read] were decoded already, as context
        self.read = 0

    def push(self, token_id):
        """Text ready to print after `token_id` ('' while a character is incomplete)."""
        self.ids.append(token_id)
        done = self.tokenizer.decode(self.ids[self.prefix:self.read])
        text = self.tokenizer.decode(self.ids[self.prefix:])
        if len(text) > len(done) and not text.endswith("\ufffd"):
            self.ids = self.ids[self.read:]
            self.prefix, self.read = 0, len(self.ids)
            return text[len(done):]
        return ""

    def flush(self):
        """Whatever is still held back (a broken character as U+FFFD)."""
        done = self.tokenizer.decode(self.ids[self.prefix:self.read])
        text = self.tokenizer.decode(self.ids[self.prefix:])
        self.ids, self.prefix, self.read = [], 0, 0
        return text[len(done):]
