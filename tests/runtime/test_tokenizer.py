"""The plan's tokenizer is Hugging Face `tokenizers` over the checkpoint's own tokenizer.json:
ids equal to an independent implementation (tiktoken) on real GPT-2, Llama 3 and Qwen
vocabularies, Llama 3's BOS first, streaming never splits a character, garbled files refused."""

import json
import time
import unicodedata

import pytest

from compiler.errors import CheckpointError
from compiler.tokenizer_import import read_tokenizer
from runtime.errors import InputError
from runtime.tokenizer import StreamDecoder, Tokenizer
from tests import tokenizer_files

CORPUS = ["Hello world, the quick brown fox jumps over the lazy dog 123 4567!",
          "Ünïcödé text — with em dashes, émojis 🙂 and    spaces\n\nnew lines\ttabs.",
          "def f(x_1): return x_1 ** 2  # code_like snake_case 3.14159"] * 40


def _train(directory):
    """A small byte-level BPE trained here, saved as tokenizer.json (+ config.json with EOS 0)."""
    tokenizer = tokenizer_files.train_byte_level_bpe(directory, CORPUS, 600, ["<|endoftext|>"])
    (directory / "config.json").write_text(json.dumps({"eos_token_id": 0}))
    return tokenizer


@pytest.fixture(scope="module", params=["gpt2", "llama3", "qwen"])
def real(request, tmp_path_factory):
    directory = tokenizer_files.checkpoint_files(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, directory, Tokenizer(read_tokenizer(directory))


def test_ids_equal_tiktoken_on_real_vocabularies(real):
    kind, _, ours = real
    special = {"gpt2": ["<|endoftext|>"], "qwen": tokenizer_files.QWEN_SPECIAL, "llama3": []}[kind]
    reference = tokenizer_files.tiktoken_encoding(kind, special)
    strings = tokenizer_files.corpus()
    assert len(strings) > 600
    for text in strings:
        expected_text = unicodedata.normalize("NFC", text) if kind == "qwen" else text  # Qwen's NFC normalizer
        expected = reference.encode(expected_text, allowed_special="all")
        assert ours.encode(text, add_special_tokens=False) == expected, (kind, text)
        assert ours.decode(expected) == expected_text, (kind, text)


def test_ids_equal_the_checkpoint_tokenizer_json(real):
    from tokenizers import Tokenizer as HFTokenizer
    kind, directory, ours = real
    if kind == "gpt2":
        pytest.skip("GPT-2 checkpoints have vocab.json + merges.txt, no tokenizer.json")
    reference = HFTokenizer.from_file(f"{directory}/tokenizer.json")
    for text in tokenizer_files.corpus():
        assert ours.encode(text) == reference.encode(text).ids, (kind, text)


def test_bos_and_eos(real):
    kind, _, ours = real
    expected_bos = {"gpt2": None, "qwen": None, "llama3": 128000}[kind]
    assert ours.bos_token_id == expected_bos
    ids = ours.encode("Hello world")
    assert (ids[0] == 128000) == (kind == "llama3")
    assert ours.eos_token_ids == {"gpt2": [50256], "qwen": [151645, 151643], "llama3": [128001, 128008, 128009]}[kind]


def test_stream_decoder_never_splits_a_character(real):
    _, _, ours = real
    text = "émojis 🙂👍🏽🇫🇷 Ünïcödé 東京タワー 한국어 and ascii"
    ids = ours.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # some characters take several tokens
    decoder = StreamDecoder(ours)
    chunks = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(chunks) == text
    assert all("\ufffd" not in chunk for chunk in chunks)


def test_megabyte_of_one_character_tokenizes_quickly(real):
    # Requirement: under a second on a developer machine; bounded loosely here (shared CI cores).
    _, _, ours = real
    for char in ("a", "7"):
        started = time.perf_counter()
        ids = ours.encode(char * (1 << 20), add_special_tokens=False)
        assert 0 < len(ids) <= 1 << 20
        assert time.perf_counter() - started < 5.0, char


def test_llama3_add_bos_token_config_adds_a_missing_bos(tmp_path):
    (tmp_path / "tokenizer.json").write_text(open(tokenizer_files.llama3_tokenizer_json()).read())
    assert Tokenizer(read_tokenizer(str(tmp_path))).bos_token_id is None  # that file's post-processor adds none
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True,
                                                                "bos_token": "<|begin_of_text|>"}))
    tokenizer = Tokenizer(read_tokenizer(str(tmp_path)))
    assert tokenizer.bos_token_id == 128000 and tokenizer.encode("Hi")[0] == 128000


def test_trained_tokenizer_json_and_vocab_merges_files(tmp_path):
    reference = _train(tmp_path)
    ours = Tokenizer(read_tokenizer(str(tmp_path)))
    assert ours.eos_token_ids == [0]
    model = json.loads((tmp_path / "tokenizer.json").read_text())["model"]
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    built = Tokenizer(read_tokenizer(str(tmp_path)))
    for text in CORPUS[:3] + ["<|endoftext|>after special"]:
        assert ours.encode(text) == built.encode(text) == reference.encode(text).ids


@pytest.mark.parametrize("files, fragment", [
    ({"tokenizer.json": "{not json"}, "tokenizer.json:1: malformed JSON"),
    ({"tokenizer.json": '{"model": {"type": "Nope"}}'}, "not a tokenizer the `tokenizers` library accepts"),
    ({"tokenizer.json": b"\xff\xfe{}"}, "not UTF-8"),
    ({"vocab.json": "[1, 2]", "merges.txt": ""}, "expected a JSON object, got list"),
    ({"vocab.json": '{"a": -1}', "merges.txt": ""}, "token 'a' has id -1"),
    ({"vocab.json": '{"a": 0, "b": 1}', "merges.txt": "a b c\n"}, "merges.txt:1: malformed merge"),
    ({"vocab.json": '{"a": 0, "b": 1, "ab": 2}', "merges.txt": "a b\n", "config.json": '{"eos_token_id": "x"}'},
     "eos_token_id 'x' must be token ids in 0..2"),
    ({"vocab.json": '{"a": 0, "b": 1, "ab": 2}', "merges.txt": "a b\n", "generation_config.json": '{"eos_token_id": 9}'},
     "eos_token_id 9 must be token ids"),
    ({"vocab.json": '{"a": 0}', "merges.txt": "", "tokenizer_config.json": '{"add_bos_token": true, "bos_token": "<s>"}'},
     "bos_token '<s>' is not in the vocabulary"),
], ids=["json", "model", "utf8", "vocab-list", "vocab-id", "merge", "eos-type", "eos-range", "bos"])
def test_garbled_tokenizer_files(tmp_path, files, fragment):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CheckpointError, match=None) as info:
        read_tokenizer(str(tmp_path))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_tokenizer_larger_than_model_vocab(tmp_path):
    largest = _train(tmp_path).get_vocab_size() - 1
    read_tokenizer(str(tmp_path), vocab_size=largest + 1)
    with pytest.raises(CheckpointError, match=f"ids up to {largest} .* vocab_size is {largest}"):
        read_tokenizer(str(tmp_path), vocab_size=largest)


def test_decode_refuses_bad_ids(tmp_path):
    _train(tmp_path)
    tokenizer = Tokenizer(read_tokenizer(str(tmp_path)))
    for bad in ([1.5], [True], [-1], [2 ** 40], ["3"]):
        with pytest.raises(InputError):
            tokenizer.decode(bad)
    with pytest.raises(InputError):
        tokenizer.encode(b"bytes")
