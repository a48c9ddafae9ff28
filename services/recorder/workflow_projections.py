"""Projections of workflow definitions and workflow runs: one plain function per event type, as in
`projections.py` (which dispatches to them), plus the step runs' own `run.started` / `run.finished`.

A step's row is read, changed as the scheduler's fold (`scheduler/workflows/state.py`) changes its state,
and written back whole: the recorder is the only writer and applies events in stream order, so the
row always holds the fold of the events before this one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from scriptbus.events.runs import RunFinished, RunStarted
from scriptbus.events.statuses import TERMINAL_STATUSES, RunStatus
from scriptbus.events.workflow_status import ENDINGS_AFTER_A_START, STEP_STATUS_OF_RUN, spad_name
from scriptbus.events.workflows import (
    FINAL_STEP_STATUSES,
    ProjectDefined,
    ProjectRemoved,
    StepStatus,
    WfRunFinished,
    WfRunRequested,
    WfRunStepCancelled,
    WfRunStepDispatched,
    WfRunStepHeld,
    WfRunStepReleased,
    WfRunStepRetryScheduled,
    WfRunStepSettled,
    WfRunStepSkipped,
    WfRunStepStopIssued,
    WfRunStopRequested,
    WorkflowDefined,
    WorkflowRemoved,
    project_id,
)
from scriptbus.recorder.schedule_projections import run_schedule
from scriptbus.recorder.values import aware

# `w` is the batch's BatchWrites (projections.py), unused here: typed loosely to keep the import one-way.
WorkflowProjection = Callable[[asyncpg.Connection, Any, int, object], Awaitable[None]]

_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


def _json(value: Any) -> Any:
    # The recorder's connections have no jsonb codec: values come back as text.
    return json.loads(value) if isinstance(value, str) else value


# definitions --------------------------------------------------------------------------------------


async def _ensure_project(conn: asyncpg.Connection, name: str, seed_id: int | None, at: datetime) -> None:
    await conn.execute(
        """INSERT INTO projects (name, id, seed_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT (name) DO NOTHING""",
        name,
        uuid.UUID(project_id(name)),
        seed_id,
        at,
    )


async def project_defined(conn: asyncpg.Connection, e: ProjectDefined, seq: int, w: object) -> None:
    await _ensure_project(conn, e.project, e.seed_id, aware(e.occurred_at))


async def project_removed(conn: asyncpg.Connection, e: ProjectRemoved, seq: int, w: object) -> None:
    # Only an empty project goes, as the catalogue's fold says.
    await conn.execute(
        "DELETE FROM projects WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM workflows WHERE project = $1)",
        e.project,
    )


async def workflow_defined(conn: asyncpg.Connection, e: WorkflowDefined, seq: int, w: object) -> None:
    at = aware(e.occurred_at)
    await _ensure_project(conn, e.project, None, at)
    steps = json.dumps([s.model_dump(mode="json") for s in sorted(e.steps, key=lambda s: s.place)])
    settings = e.settings.model_dump_json()
    await conn.execute(
        """INSERT INTO workflow_versions (workflow_id, version, project, name, seed_id, settings, steps,
                                          defined_at, defined_by)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)
           ON CONFLICT (workflow_id, version) DO NOTHING""",
        uuid.UUID(e.workflow_id),
        e.version,
        e.project,
        e.workflow,
        e.seed_id,
        settings,
        steps,
        at,
        e.defined_by,
    )
    # An older version arriving late (it cannot, in stream order, but a replay must not regress) loses.
    changed = await conn.execute(
        """INSERT INTO workflows (project, name, id, version, seed_id, settings, steps, seq, created_at,
                                  updated_at, defined_by)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $9, $10)
           ON CONFLICT (project, name) DO UPDATE SET
               version = EXCLUDED.version, seed_id = EXCLUDED.seed_id, settings = EXCLUDED.settings,
               steps = EXCLUDED.steps, updated_at = EXCLUDED.updated_at, defined_by = EXCLUDED.defined_by
           WHERE workflows.version < EXCLUDED.version""",
        e.project,
        e.workflow,
        uuid.UUID(e.workflow_id),
        e.version,
        e.seed_id,
        settings,
        steps,
        seq,
        at,
        e.defined_by,
    )
    if changed != "INSERT 0 0":
        await conn.execute("UPDATE projects SET updated_at = $2 WHERE name = $1", e.project, at)


async def workflow_removed(conn: asyncpg.Connection, e: WorkflowRemoved, seq: int, w: object) -> None:
    status = await conn.execute(
        "DELETE FROM workflows WHERE project = $1 AND name = $2 AND version <= $3", e.project, e.workflow, e.version
    )
    if status != "DELETE 0":
        await conn.execute("UPDATE projects SET updated_at = $2 WHERE name = $1", e.project, aware(e.occurred_at))


# workflow runs ------------------------------------------------------------------------------------


async def wfrun_requested(conn: asyncpg.Connection, e: WfRunRequested, seq: int, w: object) -> None:
    wfrun_id = uuid.UUID(e.wfrun_id)
    status = await conn.execute(
        """INSERT INTO workflow_runs (id, seq, project, workflow, workflow_id, version, status, task,
                                      requested_by, retry_of, kept_steps, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $10::jsonb, $11)
           ON CONFLICT (id) DO NOTHING""",
        wfrun_id,
        seq,
        e.project,
        e.workflow,
        uuid.UUID(e.workflow_id),
        e.version,
        e.task,
        e.requested_by,
        uuid.UUID(e.retry_of) if e.retry_of else None,
        json.dumps(e.kept_steps),
        aware(e.occurred_at),
    )
    if status != "INSERT 0 1":
        return
    await run_schedule(conn, e.wfrun_id, e.schedule_id, "workflow_runs")
    specs = sorted(e.steps, key=lambda s: s.place)
    if e.task is not None:
        specs = [s for s in specs if s.name == e.task]
    for spec in specs:
        kept = e.kept_steps.get(spec.name)
        step = _Step(wfrun_id=wfrun_id, name=spec.name)
        if kept is not None:
            step.status = StepStatus.SUCCEEDED
            step.kept_run_id = kept
            step.reason = f"succeeded in {e.retry_of or 'an earlier run'}"
        await conn.execute(
            """INSERT INTO workflow_run_steps (wfrun_id, name, place, exec, spec, status, spad_status)
               VALUES ($1, $2, $3, $4, $5::jsonb, 'pending', 'new')""",
            wfrun_id,
            spec.name,
            spec.place,
            spec.exec.value,
            spec.model_dump_json(),
        )
        await step.save(conn)


@dataclass
class _Step:
    """A step's row, as the fold's StepState sees it."""

    wfrun_id: uuid.UUID
    name: str
    status: StepStatus = StepStatus.PENDING
    # Each: attempt, run_id, status, exit_code, signal, survivors, started, settled, stop_issued.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    next_retry_at: datetime | None = None
    held: bool = False
    held_at: datetime | None = None
    reason: str = ""
    kept_run_id: str | None = None

    @classmethod
    async def load(cls, conn: asyncpg.Connection, wfrun_id: str, name: str) -> _Step | None:
        row = await conn.fetchrow(
            """SELECT status, attempts, next_retry_at, held, held_at, reason, run_id::text AS run_id
               FROM workflow_run_steps WHERE wfrun_id = $1 AND name = $2""",
            uuid.UUID(wfrun_id),
            name,
        )
        if row is None:
            return None
        attempts: list[dict[str, Any]] = _json(row["attempts"])
        return cls(
            wfrun_id=uuid.UUID(wfrun_id),
            name=name,
            status=StepStatus(row["status"]),
            attempts=attempts,
            next_retry_at=row["next_retry_at"],
            held=row["held"],
            held_at=row["held_at"],
            reason=row["reason"],
            kept_run_id=None if attempts else row["run_id"],
        )

    @property
    def current(self) -> dict[str, Any] | None:
        return self.attempts[-1] if self.attempts else None

    def attempt(self, number: int) -> dict[str, Any] | None:
        return next((a for a in self.attempts if a["attempt"] == number), None)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STEP_STATUSES

    async def save(self, conn: asyncpg.Connection) -> None:
        current = self.current
        survivors: list[int] = list(current["survivors"]) if current else []
        spad = spad_name(
            self.status,
            held=self.held,
            exit_code=current["exit_code"] if current else None,
            signal=current["signal"] if current else None,
            survivors=survivors,
            ran=any(a["started"] or RunStatus(a["status"]) in ENDINGS_AFTER_A_START for a in self.attempts),
        )
        run_id = current["run_id"] if current else self.kept_run_id
        await conn.execute(
            """UPDATE workflow_run_steps SET status = $3, spad_status = $4, attempt = $5, run_id = $6,
                   attempts = $7::jsonb, next_retry_at = $8, survivors = $9::jsonb, held = $10, held_at = $11,
                   reason = $12
               WHERE wfrun_id = $1 AND name = $2""",
            self.wfrun_id,
            self.name,
            self.status.value,
            spad,
            len(self.attempts),
            uuid.UUID(run_id) if run_id else None,
            json.dumps(self.attempts),
            self.next_retry_at,
            json.dumps(survivors),
            self.held,
            self.held_at,
            self.reason,
        )


def _record_ending(
    attempt: dict[str, Any], status: RunStatus, exit_code: int | None, signal: int | None, survivors: list[int]
) -> None:
    attempt.update(status=status.value, exit_code=exit_code, signal=signal, survivors=list(survivors))


async def wfrun_step_dispatched(conn: asyncpg.Connection, e: WfRunStepDispatched, seq: int, w: object) -> None:
    step = await _Step.load(conn, e.wfrun_id, e.step)
    if step is None or step.attempt(e.attempt) is not None:
        return
    step.attempts.append(
        {
            "attempt": e.attempt,
            "run_id": e.run_id,
            "status": RunStatus.QUEUED.value,
            "exit_code": None,
            "signal": None,
            "survivors": [],
            "started": False,
            "settled": False,
            "stop_issued": False,
        }
    )
    step.status = StepStatus.QUEUED
    if await conn.fetchval(
        "SELECT jsonb_typeof(spec->'fan_out') = 'object' FROM workflow_run_steps WHERE wfrun_id = $1 AND name = $2",
        step.wfrun_id,
        step.name,
    ):
        # A fan-out step's attempt is its fan-out, running from now on: no run of the attempt's own id
        # will start to say so (its hosts' runs are the fan-out's).
        step.attempts[-1]["status"] = RunStatus.RUNNING.value
        step.status = StepStatus.RUNNING
    step.next_retry_at = None
    step.held, step.held_at = False, None  # a hold belongs to the process that asked for it
    await step.save(conn)
    await conn.execute(
        """UPDATE workflow_runs SET status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,
               started_at = COALESCE(started_at, $2)
           WHERE id = $1""",
        step.wfrun_id,
        aware(e.occurred_at),
    )


# What step_run_event needs of the run; the run's own UPDATE can return it and spare a query.
STEP_COLUMNS = "runs.workflow_run_id::text AS wfrun_id, runs.workflow_step, runs.attempt"


async def step_run_event(
    conn: asyncpg.Connection, e: RunStarted | RunFinished, row: asyncpg.Record | None = None
) -> None:
    """A step run started or ended: its attempt (and the step, when it is the latest) follows it.
    `row`: the run's STEP_COLUMNS when the caller has them already."""
    if row is None:
        row = await conn.fetchrow(f"SELECT {STEP_COLUMNS} FROM runs WHERE id = $1", uuid.UUID(e.run_id))
    if row is None or row["wfrun_id"] is None or row["workflow_step"] is None or row["attempt"] is None:
        return
    step = await _Step.load(conn, row["wfrun_id"], row["workflow_step"])
    attempt = step.attempt(row["attempt"]) if step is not None else None
    if step is None or attempt is None:
        return
    if isinstance(e, RunStarted):
        attempt["started"] = True
        if attempt["status"] == RunStatus.QUEUED.value:
            attempt["status"] = RunStatus.RUNNING.value
        if attempt is step.current and step.status is StepStatus.QUEUED:
            step.status = StepStatus.RUNNING
    elif attempt["status"] not in _TERMINAL and e.status in TERMINAL_STATUSES:  # the first `finished` wins
        _record_ending(attempt, e.status, e.exit_code, e.signal, e.survivors)
    else:
        return
    await step.save(conn)


async def wfrun_step_settled(conn: asyncpg.Connection, e: WfRunStepSettled, seq: int, w: object) -> None:
    step = await _Step.load(conn, e.wfrun_id, e.step)
    attempt = step.attempt(e.attempt) if step is not None else None
    if step is None or attempt is None or attempt["settled"]:
        return
    if attempt["status"] not in _TERMINAL:  # the settlement records the ending even if run.finished is not read
        _record_ending(attempt, e.status, e.exit_code, e.signal, e.survivors)
    attempt["settled"] = True
    if attempt is step.current and not step.final:
        step.status = StepStatus.RETRYING if e.will_retry else STEP_STATUS_OF_RUN[RunStatus(attempt["status"])]
        step.next_retry_at = None
        if e.reason:
            step.reason = e.reason
    await step.save(conn)
    if e.fails_run:
        await conn.execute(
            "UPDATE workflow_runs SET failed_step = COALESCE(failed_step, $2) WHERE id = $1", step.wfrun_id, e.step
        )


async def wfrun_step_retry_scheduled(conn: asyncpg.Connection, e: WfRunStepRetryScheduled, seq: int, w: object) -> None:
    step = await _Step.load(conn, e.wfrun_id, e.step)
    if step is not None and step.status is StepStatus.RETRYING and e.attempt == len(step.attempts) + 1:
        step.next_retry_at = aware(e.retry_at)
        await step.save(conn)


async def wfrun_step_stop_issued(conn: asyncpg.Connection, e: WfRunStepStopIssued, seq: int, w: object) -> None:
    step = await _Step.load(conn, e.wfrun_id, e.step)
    attempt = step.attempt(e.attempt) if step is not None else None
    if step is None or attempt is None:
        return
    attempt["stop_issued"] = True
    if attempt is step.current and step.status in (StepStatus.QUEUED, StepStatus.RUNNING):
        step.status = StepStatus.STOPPING
    await step.save(conn)


async def wfrun_step_hold(conn: asyncpg.Connection, e: WfRunStepHeld | WfRunStepReleased, seq: int, w: object) -> None:
    step = await _Step.load(conn, e.wfrun_id, e.step)
    if step is None or (e.attempt is not None and e.attempt != len(step.attempts)):
        return  # an earlier attempt's process let go, or asked too late
    step.held = isinstance(e, WfRunStepHeld)
    step.held_at = aware(e.occurred_at) if step.held else None
    await step.save(conn)


async def wfrun_step_skipped(conn: asyncpg.Connection, e: WfRunStepSkipped, seq: int, w: object) -> None:
    step = await _Step.load(conn, e.wfrun_id, e.step)
    if step is not None and step.status is StepStatus.PENDING:
        step.status = StepStatus.SKIPPED
        step.reason = e.reason
        await step.save(conn)


async def wfrun_step_cancelled(conn: asyncpg.Connection, e: WfRunStepCancelled, seq: int, w: object) -> None:
    step = await _Step.load(conn, e.wfrun_id, e.step)
    if step is not None and step.status in (StepStatus.PENDING, StepStatus.RETRYING):
        step.status = StepStatus.CANCELLED
        step.next_retry_at = None
        step.reason = e.reason
        await step.save(conn)


async def wfrun_stop_requested(conn: asyncpg.Connection, e: WfRunStopRequested, seq: int, w: object) -> None:
    await conn.execute(
        """UPDATE workflow_runs SET
               status = CASE WHEN finished_at IS NULL AND stop_requested_at IS NULL THEN 'stopping' ELSE status END,
               stop_requested_at = COALESCE(stop_requested_at, $2),
               reason = CASE WHEN stop_requested_at IS NULL AND finished_at IS NULL THEN $3 ELSE reason END
           WHERE id = $1""",
        uuid.UUID(e.wfrun_id),
        aware(e.occurred_at),
        e.reason,
    )


async def wfrun_finished(conn: asyncpg.Connection, e: WfRunFinished, seq: int, w: object) -> None:
    await conn.execute(
        "UPDATE workflow_runs SET status = $2, reason = $3, finished_at = $4 WHERE id = $1 AND finished_at IS NULL",
        uuid.UUID(e.wfrun_id),
        e.status.value,
        e.reason,
        aware(e.occurred_at),
    )


WORKFLOW_PROJECTIONS: dict[str, WorkflowProjection] = {
    "project.defined": project_defined,
    "project.removed": project_removed,
    "workflow.defined": workflow_defined,
    "workflow.removed": workflow_removed,
    "wfrun.requested": wfrun_requested,
    "wfrun.step_dispatched": wfrun_step_dispatched,
    "wfrun.step_settled": wfrun_step_settled,
    "wfrun.step_retry_scheduled": wfrun_step_retry_scheduled,
    "wfrun.stop_requested": wfrun_stop_requested,
    "wfrun.step_stop_issued": wfrun_step_stop_issued,
    "wfrun.step_held": wfrun_step_hold,
    "wfrun.step_released": wfrun_step_hold,
    "wfrun.step_skipped": wfrun_step_skipped,
    "wfrun.step_cancelled": wfrun_step_cancelled,
    "wfrun.finished": wfrun_finished,
}
