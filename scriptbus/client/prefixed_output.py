"""The output of many runs at once on one terminal (`wf run --follow`, `run --all`): each run is followed by
the plain runs' `RunFollower` (SSE, resumed after a dropped connection) in a thread of its own, and its
whole lines, prefixed, are handed to the one thread that writes to the terminal."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from scriptbus.client.api import Api, ClientError, NotFound
from scriptbus.client.follow import RunFollower

# A run may be dispatched a moment before its first event is readable.
_NOT_YET_S = 30.0
_RETRY_S = 0.25


@dataclass(frozen=True)
class Line:
    stderr: bool
    text: str


class LineSink:
    """Takes a run's bytes (as `RunFollower` writes them) and hands each whole line, prefixed, to `emit`;
    `close()` hands over a last line that had no newline."""

    def __init__(self, prefix: str, stderr: bool, emit: Callable[[Line], None]) -> None:
        self._prefix = prefix
        self._stderr = stderr
        self._emit = emit
        self._partial = b""

    def write(self, data: bytes, /) -> int:
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            self._emit(Line(self._stderr, self._prefix + line.decode("utf-8", errors="replace")))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._partial:
            self._emit(Line(self._stderr, self._prefix + self._partial.decode("utf-8", errors="replace")))
            self._partial = b""


class PrefixedOutputs:
    """The runs being followed, by id, and the lines they have handed over."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._lines: queue.Queue[Line] = queue.Queue()
        self._threads: dict[str, threading.Thread] = {}

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._threads

    def follow(self, run_id: str, prefix: str, name: str | None = None) -> None:
        """Start following `run_id` (once), its lines prefixed by `prefix`."""
        if run_id in self._threads:
            return
        thread = threading.Thread(target=self._follow_one, args=(run_id, prefix), name=name, daemon=True)
        self._threads[run_id] = thread
        thread.start()

    def done(self) -> bool:
        """True when every followed run's output has been read to its end."""
        return not any(t.is_alive() for t in self._threads.values())

    def take(self, wait_s: float) -> list[Line]:
        """The lines handed over so far, waiting up to `wait_s` for the first."""
        lines: list[Line] = []
        try:
            lines.append(self._lines.get(timeout=wait_s) if wait_s > 0 else self._lines.get_nowait())
            while True:
                lines.append(self._lines.get_nowait())
        except queue.Empty:
            pass
        return lines

    def _follow_one(self, run_id: str, prefix: str) -> None:
        out = LineSink(prefix, False, self._lines.put)
        err = LineSink(prefix, True, self._lines.put)
        since = time.monotonic()
        try:
            with Api(self._api.base_url, self._api.token) as api:
                while True:
                    try:
                        RunFollower(api, run_id, out, err).follow()
                        return
                    except NotFound as exc:
                        if exc.no_route or time.monotonic() - since > _NOT_YET_S:
                            raise
                        time.sleep(_RETRY_S)
        except ClientError as exc:
            self._lines.put(Line(True, f"{prefix}(its output is not available: {exc.message})"))
        finally:
            out.close()
            err.close()
