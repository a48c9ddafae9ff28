"""The output of many runs at once on one terminal (`wf run --follow`, `run --all`): each run is followed by
the plain runs' `RunFollower` (SSE, resumed after a dropped connection) in a thread of its own, and its
whole lines, prefixed, are handed to the one thread that writes to the terminal. A run that started after
others had ended (one host after another) shows its lines only once theirs are all out: runs that ran one
after the other read one after the other, whichever follower thread happened to be faster."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
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
    run_id: str = ""


class LineSink:
    """Takes a run's bytes (as `RunFollower` writes them) and hands each whole line, prefixed, to `emit`;
    `close()` hands over a last line that had no newline."""

    def __init__(self, prefix: str, stderr: bool, emit: Callable[[Line], None], run_id: str = "") -> None:
        self._prefix = prefix
        self._stderr = stderr
        self._emit = emit
        self._run_id = run_id
        self._partial = b""

    def write(self, data: bytes, /) -> int:
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            self._line(line)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""

    def _line(self, raw: bytes) -> None:
        self._emit(Line(self._stderr, self._prefix + raw.decode("utf-8", errors="replace"), self._run_id))


class PrefixedOutputs:
    """The runs being followed, by id, and the lines they have handed over."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._lines: queue.Queue[Line] = queue.Queue()
        self._threads: dict[str, threading.Thread] = {}
        # Runs whose lines wait for other runs' to be out, and the lines they have handed over meanwhile.
        self._after: dict[str, frozenset[str]] = {}
        self._held: dict[str, list[Line]] = {}

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._threads

    def follow(self, run_id: str, prefix: str, name: str | None = None, after: Iterable[str] = ()) -> None:
        """Start following `run_id` (once), its lines prefixed by `prefix`; they are shown only once the
        output of the runs in `after` (followed already) has been read to its end and shown."""
        if run_id in self._threads:
            return
        waits_for = frozenset(after) & self._threads.keys()
        if waits_for:
            self._after[run_id] = waits_for
            self._held[run_id] = []
        thread = threading.Thread(target=self._follow_one, args=(run_id, prefix), name=name, daemon=True)
        self._threads[run_id] = thread
        thread.start()

    def done(self) -> bool:
        """True when every followed run's output has been read to its end (and `take` showed it all)."""
        return not self._held and not any(t.is_alive() for t in self._threads.values())

    def take(self, wait_s: float) -> list[Line]:
        """The lines to show now, waiting up to `wait_s` for the first to be handed over."""
        # A thread seen ended here has put all its lines in the queue before: they are all taken below.
        ended = {run_id for run_id, thread in self._threads.items() if not thread.is_alive()}
        handed: list[Line] = []
        try:
            handed.append(self._lines.get(timeout=wait_s) if wait_s > 0 else self._lines.get_nowait())
            while True:
                handed.append(self._lines.get_nowait())
        except queue.Empty:
            pass
        lines: list[Line] = []
        for line in handed:
            held = self._held.get(line.run_id)
            (lines if held is None else held).append(line)
        # Release, in the order they were followed, the runs whose predecessors are all out.
        released = True
        while released:
            released = False
            for run_id, waits_for in list(self._after.items()):
                if all(other in ended and other not in self._held for other in waits_for):
                    del self._after[run_id]
                    lines.extend(self._held.pop(run_id))
                    released = True
        return lines

    def _follow_one(self, run_id: str, prefix: str) -> None:
        out = LineSink(prefix, False, self._lines.put, run_id)
        err = LineSink(prefix, True, self._lines.put, run_id)
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
