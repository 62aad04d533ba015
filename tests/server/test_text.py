"""server.text.TextStream: ids become text as they arrive, an incomplete UTF-8 character is held
back, text that may start a stop string waits, and a stop string ends the text before it."""

import pytest

from server.text import TextStream


class ByteTokenizer:
    """Each id is one byte (ids >= 256 are two-byte pieces from `pieces`)."""

    pieces = {256: "é".encode()}

    def decode(self, ids):
        return b"".join(self.pieces.get(i, bytes([i]) if i < 256 else b"") for i in ids).decode("utf-8", "replace")


def _ids(text):
    return list(text.encode())


def _stream(text, stop=()):
    stream = TextStream(ByteTokenizer(), stop)
    chunks = [stream.push(i) for i in _ids(text)]
    return stream, chunks


def test_text_arrives_token_by_token():
    stream, chunks = _stream("abc")
    assert chunks == ["a", "b", "c"] and stream.flush() == ""


def test_incomplete_character_is_held_back():
    stream, chunks = _stream("aü€b")
    assert chunks == ["a", "", "ü", "", "", "€", "b"]
    assert "".join(chunks) + stream.flush() == "aü€b"


def test_stop_string_ends_the_text_before_it():
    stream, chunks = _stream("hello world, bye", stop=("o w", "zzz"))
    assert "".join(chunks) == "hell" and stream.stopped and stream.flush() == ""
    assert stream.push(ord("x")) == ""


def test_possible_stop_prefix_waits_then_is_released():
    stream, chunks = _stream("ab-a", stop=("-x",))
    assert chunks == ["a", "b", "", "-a"]
    assert not stream.stopped


@pytest.mark.parametrize("text, stop, expected", [
    ("one two three", ("two",), "one "), ("a<END>b", ("<END>", "<E"), "a"), ("xyz", ("xyz",), ""),
    ("no stop here", ("zzz",), "no stop here"),
])
def test_text_before_the_first_stop(text, stop, expected):
    stream, chunks = _stream(text, stop)
    assert "".join(chunks) + stream.flush() == expected


def test_multi_byte_piece():
    stream = TextStream(ByteTokenizer())
    assert [stream.push(i) for i in (ord("c"), ord("a"), ord("f"), 256)] == ["c", "a", "f", "é"]
