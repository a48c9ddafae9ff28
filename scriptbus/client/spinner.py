"""The spinner `scriptbus run` shows on a terminal while its run waits in the queue."""

from __future__ import annotations

import threading
from typing import TextIO

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_FRAMES = "|/-\\"


class Spinner:
    """Draws `<frame> <text>` on one line of `stream` from a thread until `stop()`, which erases it.

    Drawing starts only after `delay_s`, so a run that starts at once leaves no flicker behind."""

    def __init__(self, stream: TextIO, text: str, delay_s: float = 0.3, interval_s: float = 0.1) -> None:
        self.stream = stream
        self.text = text
        self.delay_s = delay_s
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._drawn = False
        self._thread: threading.Thread | None = None
        encoding = (getattr(stream, "encoding", None) or "").lower()
        self._frames = _FRAMES if encoding.startswith("utf") else _ASCII_FRAMES

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._spin, daemon=True, name="spinner")
            self._thread.start()

    def stop(self) -> None:
        """Stop and erase the line; safe to call more than once, or before `start()`."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False
        self._stop.clear()

    def _spin(self) -> None:
        if self._stop.wait(self.delay_s):
            return
        i = 0
        while not self._stop.is_set():
            self.stream.write(f"\r\x1b[2K{self._frames[i % len(self._frames)]} {self.text}")
            self.stream.flush()
            self._drawn = True
            i += 1
            self._stop.wait(self.interval_s)
