"""Following a run live: its events over SSE (`GET /runs/{id}/events`), output bytes onto the right
local stream, reconnecting with `Last-Event-ID` after a dropped connection so every byte arrives once."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol, Self

from scriptbus.client.api import Api, ClientError, NotFound, Unreachable
from scriptbus.client.render import signal_name

TERMINAL = frozenset({"succeeded", "failed", "terminated", "stopped", "killed", "timed_out", "cancelled", "lost"})
_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: str


def sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines of an event stream body, split only where SSE splits them (CRLF, LF, CR).

    Not httpx's `iter_lines`: that splits like `str.splitlines`, also at U+2028, U+0085 and friends,
    which a script's output may hold unescaped inside an event's JSON."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        start = 0
        while True:
            cr, lf = buffer.find(b"\r", start), buffer.find(b"\n", start)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            if end == cr and end == len(buffer) - 1:
                # A CR last in the chunk may be the first half of a CRLF.
                break
            yield buffer[start:end].decode("utf-8", errors="replace")
            start = end + (2 if buffer[end : end + 2] == b"\r\n" else 1)
        buffer = buffer[start:]
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", errors="replace")


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Server-sent events from the lines of a `text/event-stream` body (WHATWG rules: `:` comments,
    one optional space after the colon, `data` lines joined by newlines, a blank line dispatches)."""
    event_id: str | None = None
    event = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data or event:
                yield SseEvent(event_id, event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\x00" not in value:
            event_id = value


@dataclass
class Outcome:
    """How a followed run ended."""

    status: str
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    deleted: bool = False


class InterruptGuard:
    """Holds Ctrl-C back while an output chunk is written and its position recorded, so following again
    after the interrupt neither repeats nor skips a byte. Install it in the main thread only."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False
        self._previous: Callable[[int, FrameType | None], object] | int | None = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, _signum: int, _frame: FrameType | None) -> None:
        if self._depth:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending:
                self._pending = False
                raise KeyboardInterrupt


class ByteSink(Protocol):
    """Where a followed run's bytes go: a binary stream such as `sys.stdout.buffer`, or anything that
    takes bytes the same way (`scriptbus wf` prefixes each line with its step)."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


@dataclass
class RunFollower:
    """Writes a run's output to `stdout`/`stderr` (binary streams) until it ends, then returns its
    `Outcome`. `follow()` may be called again after a KeyboardInterrupt: it resumes where it stopped.

    `only` keeps one stream's bytes (written to `stdout`); `on_state` hears `queued` / `running` /
    `stopping` as the run moves on (and `finished` at the end)."""

    api: Api
    run_id: str
    stdout: ByteSink
    stderr: ByteSink
    only: str | None = None
    on_state: Callable[[str], None] = lambda _state: None
    guard: InterruptGuard = field(default_factory=InterruptGuard)
    reconnect_for_s: float = 60.0
    last_event_id: str | None = None
    outcome: Outcome | None = None

    def follow(self) -> Outcome:
        failing_since: float | None = None
        attempt = 0
        while self.outcome is None:
            headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else None
            try:
                with (
                    self.api.transport_errors(),
                    self.api.stream(f"/runs/{self.run_id}/events", headers=headers) as response,
                ):
                    failing_since = None
                    if response.status_code == 204:
                        # We are past the run's last event already: its end is in the read model.
                        self.outcome = self._outcome_from_read_model()
                        break
                    for event in parse_sse(sse_lines(response.iter_bytes())):
                        # Back off afresh only after progress: a server that keeps closing at once
                        # is asked again every few seconds, not in a tight loop.
                        attempt = 0
                        self._handle(event)
                        if self.outcome is not None:
                            break
                # Closed before the run ended (a gateway restart): resume after the last event.
            except NotFound as exc:
                if exc.no_route:
                    raise ClientError(
                        f"the API at {self.api.base_url} cannot stream a run's events (an older gateway?)"
                    ) from exc
                raise
            except (Unreachable, ClientError) as exc:
                # A 4xx will not heal by retrying; a 5xx or a lost connection may.
                if not isinstance(exc, Unreachable) and not _retryable(exc):
                    raise
                if not self.api.answered:
                    # Never reached at all: say so now rather than after a minute of retries.
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.reconnect_for_s:
                    raise Unreachable(
                        f"{exc.message}; the run goes on: reattach with `scriptbus logs -f {self.run_id}`"
                    ) from exc
            if self.outcome is None:
                time.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
                attempt += 1
        return self.outcome

    def _outcome_from_read_model(self) -> Outcome:
        try:
            run = self.api.get_run(self.run_id)
        except NotFound:
            return Outcome(status="deleted", deleted=True)
        return Outcome(str(run["status"]), run.get("exit_code"), run.get("signal"), str(run.get("reason") or ""))

    def _handle(self, event: SseEvent) -> None:
        try:
            body = json.loads(event.data) if event.data else {}
        except ValueError:
            body = {}
        # Acting on an event and recording its id happen together, or not at all, even with Ctrl-C:
        # following again then starts exactly after it.
        with self.guard.critical():
            if event.event == "output":
                self.on_state("running")
                stream = str(body.get("stream", "stdout"))
                if self.only is None or stream == self.only:
                    target = self.stderr if stream == "stderr" and self.only is None else self.stdout
                    target.write(base64.b64decode(body.get("data", "")))
                    target.flush()
            elif event.event == "run.requested":
                self.on_state("queued")
            elif event.event == "run.started":
                self.on_state("running")
            elif event.event == "run.stop_requested":
                self.on_state("stopping")
            elif event.event == "run.finished":
                self.on_state("finished")
                self.outcome = Outcome(
                    status=str(body.get("status", "")),
                    exit_code=body.get("exit_code"),
                    signal=body.get("signal"),
                    reason=str(body.get("reason") or ""),
                )
            elif event.event == "run.deleted":
                self.on_state("finished")
                self.outcome = Outcome(status="deleted", deleted=True)
            self.last_event_id = event.id or self.last_event_id


def _retryable(exc: ClientError) -> bool:
    return exc.status is not None and exc.status >= 500


def exit_status(outcome: Outcome) -> tuple[int, str]:
    """The exit status of `scriptbus run` for how the run ended, and the status line to print (empty
    when the script's own exit code says it all)."""
    status = outcome.status
    if status == "succeeded":
        return 0, ""
    if status == "failed" and outcome.exit_code is not None:
        return outcome.exit_code, ""
    if status in ("terminated", "stopped", "killed") and outcome.signal:
        name = signal_name(outcome.signal)
        line = f"terminated by {name}" if status == "terminated" else f"{status} ({name})"
        return 128 + outcome.signal, line
    if status == "deleted":
        return 1, "deleted while it was being followed"
    line = status.replace("_", " ") if status else "ended with an unknown status"
    if outcome.reason:
        line += f": {outcome.reason}"
    return 1, line


__all__ = ["ByteSink", "InterruptGuard", "Outcome", "RunFollower", "SseEvent", "exit_status", "parse_sse"]
