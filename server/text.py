"""Ids to text as they arrive: incremental detokenization with stop strings held back.

Only `Tokenizer.decode` is used: each new id's text is the difference between the decoding of a
short window of ids with and without it, withheld while it ends in an incomplete UTF-8 character
(U+FFFD). Text that could be the start of a stop string waits until it is known not to be one; a
stop string ends the text just before it (it is not part of the output, as in the OpenAI API).
"""


class TextStream:
    """Accumulates one sequence's text; `push` returns what is safe to send now."""

    def __init__(self, tokenizer, stop=()):
        self.tokenizer, self.stop = tokenizer, tuple(s for s in stop if s)
        self.ids, self.text, self.sent = [], "", 0
        self._prefix = self._read = 0  # ids[prefix:read] is the context window already turned into text
        self.stopped = False

    def push(self, token):
        """Add one id; returns the new text that can be sent ('' while held back)."""
        if self.stopped:
            return ""
        self.ids.append(int(token))
        before = self.tokenizer.decode(self.ids[self._prefix:self._read])
        after = self.tokenizer.decode(self.ids[self._prefix:])
        if after.endswith("\ufffd"):  # an incomplete character: wait for its next bytes
            return ""
        self.text += after[len(before):]
        self._prefix, self._read = self._read, len(self.ids)
        return self._release()

    def _release(self):
        if self.stop:
            longest = max(map(len, self.stop))
            start = max(0, self.sent - longest + 1)
            found = [at for at in (self.text.find(s, start) for s in self.stop) if at >= 0]
            if found:
                self.text, self.stopped = self.text[:min(found)], True
                return self._take(len(self.text))
            return self._take(len(self.text) - self._held())
        return self._take(len(self.text))

    def _held(self):
        """Length of the longest tail of the text that begins some stop string."""
        for size in range(min(len(self.text), max(map(len, self.stop)) - 1), 0, -1):
            tail = self.text[-size:]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0

    def _take(self, end):
        chunk = self.text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return chunk

    def flush(self):
        """Whatever is still held back (the sequence ended without a stop string)."""
        if self.stopped:
            return ""
        if self._read < len(self.ids):
            self.text += self.tokenizer.decode(self.ids[self._prefix:])[len(
                self.tokenizer.decode(self.ids[self._prefix:self._read])):]
            self._read = len(self.ids)
        return self._take(len(self.text))
