"""How `scriptbus wf` shows workflow runs and definitions: the steps table, seed 004's status lines, the
runs list, one-line summaries of a changed project, and the exit status for how a workflow run ended."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from scriptbus.client.render import (
    STATUS_COLOURS,
    ago,
    duration,
    paint,
    parse_time,
    signal_name,
    table,
    truncate,
    visible_len,
)

# Step statuses the plain runs do not have.
_COLOURS = {**STATUS_COLOURS, "pending": "dim", "retrying": "yellow", "skipped": "dim"}
ACTIVE = frozenset({"queued", "running", "stopping"})
TERMINAL = frozenset({"succeeded", "failed", "stopped", "killed", "timed_out", "cancelled"})
# `wf run --follow` and `wf status --wait`: how a workflow run ended, as an exit status.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1  # failed or timed_out (as any refusal of the API)
EXIT_STOPPED = 3  # stopped, killed or cancelled: ended on request
EXIT_DETACHED = 130  # Ctrl-C: we stopped watching, the run goes on


def exit_status(status: str) -> int:
    if status == "succeeded":
        return EXIT_SUCCEEDED
    if status in ("stopped", "killed", "cancelled"):
        return EXIT_STOPPED
    return EXIT_FAILED


def _last_attempt(step: dict[str, Any]) -> dict[str, Any]:
    attempts = step.get("attempts") or []
    return attempts[-1] if attempts else {}


def step_exit(step: dict[str, Any]) -> str:
    """The latest attempt's exit code or signal name; `-` before it has ended."""
    last = _last_attempt(step)
    if last.get("exit_code") is not None:
        return str(last["exit_code"])
    if last.get("signal") is not None:
        return signal_name(int(last["signal"]))
    return "-"


def step_note(step: dict[str, Any], now: datetime | None = None) -> str:
    """What else a person should know about the step: held, a retry pending, survivors, the reason."""
    notes = []
    if step.get("held"):
        notes.append("held (waiting)")
    retry_at = parse_time(step.get("next_retry_at"))
    if retry_at is not None and step.get("status") == "retrying":
        notes.append(f"retry {_in(retry_at, now)}")
    if step.get("survivors"):
        notes.append("survivors " + " ".join(str(p) for p in step["survivors"]))
    if step.get("reason"):
        notes.append(str(step["reason"]))
    return "; ".join(notes)


def _in(when: datetime, now: datetime | None) -> str:
    text = ago(when, now)
    # `ago` of a future time is `just now`; a pending retry reads better as "due".
    return "due" if text == "just now" else f"due ({text})"


def steps_table(run: dict[str, Any], colour: bool, width: int = 120, now: datetime | None = None) -> str:
    """One row per step in place order: status (and seed 004's name for it), attempt, exit, run id."""
    headers = ["STEP", "EXEC", "STATUS", "SPAD", "ATTEMPT", "EXIT", "RUN", "NOTE"]
    rows = []
    for step in run.get("steps") or []:
        status = str(step.get("status", ""))
        rows.append(
            [
                str(step.get("name", "")),
                str(step.get("exec", "")),
                paint(status, _COLOURS.get(status), colour),
                str(step.get("spad_status", "")),
                str(step.get("attempt", 0) or "-"),
                step_exit(step),
                str(step.get("run_id") or "-")[:8],
                step_note(step, now),
            ]
        )
    return table(headers, _fit(headers, rows, width), colour)


def run_heading(run: dict[str, Any], colour: bool, now: datetime | None = None) -> str:
    """`pr1/wf1  run 3f2a9c1e  running  v2  started 5s ago`, plus why it failed when it did."""
    status = str(run.get("status", ""))
    parts = [
        f"{run.get('project')}/{run.get('workflow')}",
        f"run {str(run.get('id', ''))[:8]}",
        paint(status, _COLOURS.get(status), colour),
        f"v{run.get('version', '?')}",
    ]
    if run.get("task"):
        parts.append(f"task {run['task']}")
    if run.get("started_at"):
        parts.append(f"started {ago(run.get('started_at'), now)}")
    elapsed = run_duration(run, now)
    if run.get("finished_at") and elapsed is not None:
        parts.append(f"took {duration(elapsed)}")
    line = "  ".join(parts)
    if run.get("failed_step"):
        line += f"  (step {run['failed_step']} failed)"
    if run.get("reason"):
        line += f"  {run['reason']}"
    return line


def run_duration(run: dict[str, Any], now: datetime | None = None) -> float | None:
    started = parse_time(run.get("started_at"))
    if started is None:
        return None
    end = parse_time(run.get("finished_at")) or now or datetime.now(started.tzinfo)
    return max(0.0, (end - started).total_seconds())


def spad_lines(run: dict[str, Any], task: str | None = None) -> str:
    """Seed 004's status of each step (or of `task` only), one `NAME STATUS` line each."""
    return "\n".join(
        f"{step.get('name')} {step.get('spad_status')}"
        for step in run.get("steps") or []
        if task is None or step.get("name") == task
    )


def runs_table(runs: Sequence[dict[str, Any]], colour: bool, width: int = 120, now: datetime | None = None) -> str:
    headers = ["ID", "PROJECT", "WORKFLOW", "STATUS", "VERSION", "CREATED", "DURATION", "NOTE"]
    rows = []
    for run in runs:
        status = str(run.get("status", ""))
        note = f"step {run['failed_step']} failed" if run.get("failed_step") else ""
        if run.get("task"):
            note = "; ".join(filter(None, [f"task {run['task']}", note]))
        if run.get("retry_of"):
            note = "; ".join(filter(None, [f"retry of {str(run['retry_of'])[:8]}", note]))
        rows.append(
            [
                str(run.get("id", ""))[:8],
                str(run.get("project", "")),
                str(run.get("workflow", "")),
                paint(status, _COLOURS.get(status), colour),
                str(run.get("version", "")),
                ago(run.get("created_at"), now),
                duration(run_duration(run, now)),
                note,
            ]
        )
    return table(headers, _fit(headers, rows, width), colour)


def _fit(headers: Sequence[str], rows: list[list[str]], width: int) -> list[list[str]]:
    """Cut the last column to what the terminal has left (at least 20 characters)."""
    if not rows:
        return rows
    fixed = sum(max(visible_len(headers[i]), *(visible_len(r[i]) for r in rows)) + 2 for i in range(len(headers) - 1))
    room = max(20, width - fixed)
    return [[*row[:-1], truncate(row[-1], room)] for row in rows]


def project_summary(document: dict[str, Any]) -> str:
    """`pr1: wf1 (t11, t12), wf2 (t21, t22)` for seed 004's document of a project."""
    project = (document.get("context") or {}).get("project") or {}
    workflows = []
    for wf in project.get("workflows") or []:
        tasks = [str(t.get("name")) for t in sorted(wf.get("tasks") or [], key=lambda t: t.get("place", 0))]
        workflows.append(f"{wf.get('name')} ({', '.join(tasks) or 'no tasks'})")
    return f"{project.get('name')}: {', '.join(workflows) or 'no workflows'}"


def document_project(document: Any) -> str | None:
    """The project a seed-004 document names, if it names one."""
    if not isinstance(document, dict):
        return None
    context = document.get("context")
    project = context.get("project") if isinstance(context, dict) else None
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) and name else None
