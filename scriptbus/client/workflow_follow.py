"""Following a workflow run live (`scriptbus wf run --follow`): a table of its steps, polled from
`GET /workflow-runs/{id}`, and the output of every step attempt, each line prefixed by its step.

Each attempt's output is followed by the plain runs' `RunFollower` (SSE, resumed after a dropped
connection) in a thread of its own; the threads hand whole lines to the main thread, which alone writes
to the terminal: on a terminal the table stays under the output and is redrawn in place, elsewhere each
step's changes are one line on stderr and the table is printed once at the end."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from scriptbus.client import workflow_render
from scriptbus.client.api import Api, ClientError, NotFound, Unreachable
from scriptbus.client.follow import RunFollower
from scriptbus.client.render import visible_len

POLL_S = 0.25
# How long the output of steps may trail the run's end (the recorder lags the stream a little).
_OUTPUT_GRACE_S = 30.0
# A step's run may be dispatched a moment before its first event is readable.
_NOT_YET_S = 30.0


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


def step_prefix(step: str, attempt: int, width: int) -> str:
    """`t11 | ` for a first attempt, `t11#2 | ` for a restart, names padded to `width`."""
    label = step if attempt <= 1 else f"{step}#{attempt}"
    return f"{label:<{width}} | "


def step_attempts(run: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(step, attempt, run id) of every attempt the workflow run has started, in step order. A step kept
    from the run a retry repeats has no attempt of its own: its old output is not shown again."""
    found = []
    for step in run.get("steps") or []:
        if step.get("fanout_id"):
            # A `fan_out` step: its attempt is no run; each host's run is, named `step@host`.
            for host in step.get("fanout_hosts") or []:
                if host.get("run_id"):
                    name = f"{step['name']}@{host['host']}"
                    found.append((name, int(step.get("attempt") or 1), str(host["run_id"])))
            continue
        for attempt in step.get("attempts") or []:
            if attempt.get("run_id"):
                found.append((str(step["name"]), int(attempt.get("attempt") or 1), str(attempt["run_id"])))
    return found


def prefix_width(run: dict[str, Any]) -> int:
    names = [str(s.get("name", "")) for s in run.get("steps") or []]
    names += [name for name, _attempt, _run in step_attempts(run)]
    return max((len(n) for n in names), default=0)


def change_lines(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What changed between two looks at a workflow run, one line per step or run change."""
    lines = []
    old_steps = {s["name"]: s for s in (before or {}).get("steps") or []}
    for step in after.get("steps") or []:
        old = old_steps.get(step["name"])
        key = (step.get("status"), step.get("attempt"), step.get("held"))
        if old is not None and key == (old.get("status"), old.get("attempt"), old.get("held")):
            continue
        if old is None and step.get("status") == "pending":
            continue
        line = f"{step['name']}: {step.get('status')} ({step.get('spad_status')})"
        if int(step.get("attempt") or 0) > 1:
            line += f", attempt {step['attempt']}"
        exit_text = workflow_render.step_exit(step)
        if step.get("status") not in workflow_render.ACTIVE | {"pending", "retrying"} and exit_text != "-":
            line += f", exit {exit_text}"
        lines.append(line)
    if before is None or before.get("status") != after.get("status"):
        lines.append(f"workflow run {str(after.get('id'))[:8]}: {after.get('status')}")
    return lines


@dataclass
class WorkflowFollower:
    """Follows one workflow run until it ends; `follow()` returns its last state (as GET shows it)."""

    api: Api
    wfrun_id: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    live_table: bool = False
    colour: bool = False
    width: int = 120
    reconnect_for_s: float = 60.0
    # Lines from the output threads, the threads by step run id, the table on screen and its rows.
    _lines: queue.Queue[Line] = field(default_factory=queue.Queue, init=False)
    _threads: dict[str, threading.Thread] = field(default_factory=dict, init=False)
    _table: str = field(default="", init=False)
    _drawn: int = field(default=0, init=False)

    def follow(self) -> dict[str, Any]:
        run: dict[str, Any] | None = None
        failing_since: float | None = None
        ended_at: float | None = None
        try:
            while True:
                latest: dict[str, Any] | None
                try:
                    latest = self.api.get_workflow_run(self.wfrun_id)
                    failing_since = None
                except ClientError as exc:
                    failing_since = self._tolerate(exc, failing_since, seen=run is not None)
                    latest = run
                if latest is not None:
                    self._follow_outputs(latest)
                    self._show_status(run, latest)
                    run = latest
                if run is not None and run.get("status") in workflow_render.TERMINAL:
                    ended_at = ended_at or time.monotonic()
                    if self._outputs_done() or time.monotonic() - ended_at > _OUTPUT_GRACE_S:
                        break
                self._pump(POLL_S)
            self._pump(0)
        finally:
            if self.live_table:
                # The table stays where it is; whatever comes next goes below it.
                self._drawn = 0
        assert run is not None
        if not self.live_table:
            self.err.write(workflow_render.run_heading(run, False) + "\n")
            self.err.write(workflow_render.steps_table(run, False, self.width) + "\n")
            self.err.flush()
        return run

    def _tolerate(self, exc: ClientError, failing_since: float | None, seen: bool) -> float:
        """Keep polling through a gateway restart or a read model that does not show a new run yet."""
        transient = isinstance(exc, Unreachable) or (exc.status is not None and exc.status >= 500)
        if isinstance(exc, NotFound) and not exc.no_route and not seen:
            transient = True
        if not transient or not self.api.answered:
            raise exc
        now = time.monotonic()
        failing_since = failing_since or now
        if now - failing_since > self.reconnect_for_s:
            raise Unreachable(
                f"{exc.message}; the workflow run goes on: follow it again with `scriptbus wf follow {self.wfrun_id}`"
            ) from exc
        return failing_since

    # output of the steps ---------------------------------------------------------------------------

    def _follow_outputs(self, run: dict[str, Any]) -> None:
        width = prefix_width(run)
        for step, attempt, run_id in step_attempts(run):
            if run_id in self._threads:
                continue
            prefix = step_prefix(step, attempt, width)
            thread = threading.Thread(
                target=self._follow_one, args=(run_id, prefix), name=f"wf-output-{step}-{attempt}", daemon=True
            )
            self._threads[run_id] = thread
            thread.start()

    def _follow_one(self, run_id: str, prefix: str) -> None:
        out = LineSink(prefix, False, self._lines.put)
        err = LineSink(prefix, True, self._lines.put)
        since = time.monotonic()
        try:
            with Api(self.api.base_url, self.api.token) as api:
                while True:
                    try:
                        RunFollower(api, run_id, out, err).follow()
                        return
                    except NotFound as exc:
                        if exc.no_route or time.monotonic() - since > _NOT_YET_S:
                            raise
                        time.sleep(POLL_S)
        except ClientError as exc:
            self._lines.put(Line(True, f"{prefix}(its output is not available: {exc.message})"))
        finally:
            out.close()
            err.close()

    def _outputs_done(self) -> bool:
        return not any(t.is_alive() for t in self._threads.values())

    # the terminal ------------------------------------------------------------------------------------

    def _pump(self, wait_s: float) -> None:
        """Write the lines the threads have handed over, waiting up to `wait_s` for the first."""
        lines: list[Line] = []
        try:
            lines.append(self._lines.get(timeout=wait_s) if wait_s > 0 else self._lines.get_nowait())
            while True:
                lines.append(self._lines.get_nowait())
        except queue.Empty:
            pass
        if not lines:
            return
        self._erase()
        for line in lines:
            target = self.err if line.stderr else self.out
            target.write(line.text + "\n")
            target.flush()
        self._redraw()

    def _show_status(self, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        if not self.live_table:
            for line in change_lines(before, after):
                self.err.write(f"scriptbus: {line}\n")
            self.err.flush()
            return
        table = workflow_render.run_heading(after, self.colour) + "\n"
        table += workflow_render.steps_table(after, self.colour, self.width) + "\n"
        if table != self._table:
            self._erase()
            self._table = table
            self._redraw()

    def _erase(self) -> None:
        if self._drawn:
            # Up to the table's first line, then clear to the end of the screen.
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _redraw(self) -> None:
        self.out.flush()
        if self.live_table and self._table:
            self.out.write(self._table)
            # Rows on screen, counting the lines the terminal wraps, so erasing goes back far enough.
            width = max(1, self.width)
            lines = self._table.split("\n")[:-1]
            self._drawn = sum(max(1, -(-visible_len(line) // width)) for line in lines)
        self.out.flush()
