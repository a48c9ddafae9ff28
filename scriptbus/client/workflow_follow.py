"""Following a workflow run live (`scriptbus wf run --follow`): a table of its steps, polled from
`GET /workflow-runs/{id}`, and the output of every step attempt, each line prefixed by its step.

Each attempt's output is followed in a thread of its own (`PrefixedOutputs`) that hands whole lines to
the main thread, which alone writes to the terminal: on a terminal the table stays under the output and
is redrawn in place, elsewhere each step's changes are one line on stderr and the table is printed once
at the end."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from scriptbus.client import workflow_render
from scriptbus.client.api import Api, ClientError, NotFound, Unreachable
from scriptbus.client.prefixed_output import PrefixedOutputs
from scriptbus.client.render import visible_len

POLL_S = 0.25
# How long the output of steps may trail the run's end (the recorder lags the stream a little).
_OUTPUT_GRACE_S = 30.0


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
    # The steps' output being followed, the table on screen and its rows.
    _outputs: PrefixedOutputs = field(init=False)
    _table: str = field(default="", init=False)
    _drawn: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._outputs = PrefixedOutputs(self.api)

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
                    if self._outputs.done() or time.monotonic() - ended_at > _OUTPUT_GRACE_S:
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
            self._outputs.follow(run_id, step_prefix(step, attempt, width), name=f"wf-output-{step}-{attempt}")

    # the terminal ------------------------------------------------------------------------------------

    def _pump(self, wait_s: float) -> None:
        """Write the lines the threads have handed over, waiting up to `wait_s` for the first."""
        lines = self._outputs.take(wait_s)
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
