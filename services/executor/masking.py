"""Masking a run's secret values in its output, as CI systems do: each occurrence becomes `***`.

A value may arrive split across two reads of the pipe, so the bytes at the end of a read that could be
the start of a value are held back until the next read shows whether they are (or the pipe ends). A
script that wants to reveal a secret still can (encoded, reversed, …): masking keeps an accidental
`echo` or `set -x` from putting the value into the output, the events stream and the database.
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = b"***"


class OutputMask:
    """Masks one stream of one run. `feed` each read in order, then `end` once at EOF."""

    def __init__(self, values: Iterable[str]) -> None:
        # Longest first, so a value containing another is masked whole.
        self._values = sorted({v.encode() for v in values if v}, key=len, reverse=True)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """What of `held + data` can be shown now, masked; the rest waits for the next read."""
        if not self._values:
            return data
        buf = self._held + data
        for value in self._values:
            buf = buf.replace(value, MASK)
        keep = max((self._partial_tail(buf, value) for value in self._values), default=0)
        self._held = buf[len(buf) - keep :] if keep else b""
        return buf[: len(buf) - keep]

    def end(self) -> bytes:
        """The bytes still held at EOF: they turned out to be no value."""
        held, self._held = self._held, b""
        return held

    @staticmethod
    def _partial_tail(buf: bytes, value: bytes) -> int:
        """The length of the longest end of `buf` that is the start (not the whole) of `value`."""
        first = value[:1]
        i = buf.find(first, max(0, len(buf) - (len(value) - 1)))
        while i != -1:
            if value.startswith(buf[i:]):
                return len(buf) - i
            i = buf.find(first, i + 1)
        return 0
