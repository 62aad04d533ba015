"""The plan's byte-level BPE tokenizer encodes and decodes as Hugging Face `tokenizers` does."""

import json

import pytest

tokenizers = pytest.importorskip("tokenizers")

from compiler.tokenizer_import import read_tokenizer  # noqa: E402
from runtime.tokenizer import StreamDecoder, Tokenizer  # noqa: E402

CORPUS = ["Hello world, the quick brown fox jumps over the lazy dog 123 4567!",
          "Ünïcödé text — with em dashes, émojis 🙂 and    spaces\n\nnew lines\ttabs.",
          "def f(x_1): return x_1 ** 2  # code_like snake_case 3.14159"] * 40
SAMPLES = ["Hello world!", "the lazy dog's 12345 bones", "  leading spaces and trailing  ",
           "Ünïcödé 🙂 mixed_case_words\nand\r\nlines", "<|endoftext|>after special", "x_1 ** 2 = 3.14"]
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _train(directory, split_pattern=None):
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers
    tokenizer = HFTokenizer(models.BPE())
    if split_pattern:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split_pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "config.json").write_text(json.dumps({"eos_token_id": 0}))
    return tokenizer


@pytest.mark.parametrize("pattern", [None, QWEN_PATTERN], ids=["gpt2-regex", "qwen-split"])
def test_matches_hf_tokenizers(tmp_path, pattern):
    reference = _train(tmp_path, pattern)
    ours = Tokenizer(read_tokenizer(str(tmp_path)))
    assert ours.eos_token_ids == [0]
    for text in SAMPLES:
        expected = reference.encode(text).ids
        assert ours.encode(text) == expected, text
        assert ours.decode(expected) == reference.decode(expected, skip_special_tokens=False)


def test_stream_decoder_holds_back_partial_characters(tmp_path):
    _train(tmp_path)
    tokenizer = Tokenizer(read_tokenizer(str(tmp_path)))
    text = "émojis 🙂 Ünïcödé"
    ids = tokenizer.encode(text)
    decoder = StreamDecoder(tokenizer)
    chunks = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(chunks) == text
    assert all("\ufffd" not in chunk for chunk in chunks)


def test_vocab_and_merges_files(tmp_path):
    reference = _train(tmp_path)
    model = json.loads((tmp_path / "tokenizer.json").read_text())["model"]
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    ours = Tokenizer(read_tokenizer(str(tmp_path)))
    assert ours.encode("the quick brown fox") == reference.encode("the quick brown fox").ids
