"""The write side of workflows: definition changes (seed 004's verbs) and workflow runs, as events.

Definition changes of one project take turns (a lock in the wfdefs bucket), and each starts from read
models that have caught up with the stream: a change computed from stale definitions would store a
version number another change already used, and one of the two would be lost.

A workflow has at most `max_active_runs` active runs: its key in the wfactive bucket holds their set, and a
compare-and-set on that key is the one atomic start (`events/active_runs.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import nats.errors
import nats.js.errors

from scriptbus.events.active_runs import ActiveRunsBusy, Holders, claim_active_run, read_active_runs
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.envelope import Event, new_id
from scriptbus.events.workflow_definitions import Change, Project
from scriptbus.events.workflow_status import spad_name
from scriptbus.events.workflows import (
    ACTIVE_WORKFLOW_RUN_STATUSES,
    StepStatus,
    WfRunEvent,
    WfRunRequested,
    WfRunStepHeld,
    WfRunStepReleased,
    WfRunStopRequested,
    WorkflowRunStatus,
    WorkflowSettings,
    workflow_id,
)
from scriptbus.gateway import actions, workflow_readmodels
from scriptbus.gateway.catalogue import name_key
from scriptbus.gateway.errors import BusUnavailable, GatewayError, bus_errors, db_errors, invalid_input
from scriptbus.gateway.state import Gateway
from scriptbus.gateway.workflow_schemas import WorkflowRun, WorkflowRunStep

log = logging.getLogger(__name__)

# How long a definition change waits for another one on the same project before answering 409.
LOCK_WAIT_S = 10.0
_POLL_S = 0.05
# A start whose claim is this old while its run is in neither the stream nor the read models belongs
# to a gateway that died between the claim and the publish: a start that finds the workflow full takes its place.
STALE_CLAIM_S = 30.0
# A 409 names at most this many of the active runs (a workflow may have thousands).
_NAMED_RUNS = 20


class DefinitionNotFoundError(GatewayError):
    status_code = 404


class WorkflowConflict(GatewayError):
    """The workflow (or run) is in a state that forbids the request: running, finished, busy."""

    status_code = 409


class WorkflowRunNotFound(GatewayError):
    status_code = 404

    def __init__(self, wfrun_id: str) -> None:
        super().__init__(f"workflow run {wfrun_id} not found")


# definitions --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _project_turn(gw: Gateway, project: str) -> AsyncIterator[None]:
    """Hold the project's definition lock for the duration of one change."""
    key = name_key(project)
    holder = new_id().encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCK_WAIT_S
    with bus_errors("take a turn to change the project's definitions"):
        kv = await gw.wfdefs()
        while True:
            try:
                revision = await kv.create(key, holder)
                break
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            if loop.time() >= deadline:
                raise WorkflowConflict(f"another change of project {project!r} is in progress; try again")
            await asyncio.sleep(_POLL_S)
    try:
        yield
    finally:
        try:
            await kv.delete(key, last=revision)
        except BUS_ERRORS as exc:
            # The bucket's TTL frees it.
            log.warning("could not release the definition lock of project %r: %s", project, exc)


async def _caught_up(gw: Gateway) -> None:
    """Wait until the read models hold every event stored so far."""
    actions.require_bus(gw)
    with bus_errors("read the stream's position"):
        info = await gw.js.stream_info(gw.subjects.events_stream)
    if not await actions.readable(gw, info.state.last_seq):
        raise BusUnavailable("the read models are behind the stream; nothing was changed, try again shortly")


async def _refuse_while_running(gw: Gateway, project: str, workflows: list[str]) -> None:
    with db_errors():
        active = await workflow_readmodels.active_runs(gw.pool, project, workflows)
    if active:
        named = ", ".join(f"{w} (run {r})" for w, r in active)
        raise WorkflowConflict(f"workflows of {project!r} are running: {named}; stop them first")
    with bus_errors("look up active runs"):
        kv = await gw.wfactive()
        for name in workflows:
            current = await read_active_runs(kv, workflow_id(project, name))
            if current.revision is None or not current.holders:
                continue
            running = await _still_active(gw, current.holders, current.revision)
            if running:
                raise WorkflowConflict(
                    f"workflow {project}/{name} is running (run {_named(sorted(running))}); stop it first"
                )


async def change_project(gw: Gateway, project: str, verb: Callable[[Project | None], Change], by: str) -> Change:
    """Apply `verb` to the project's current definitions and store the events that record the change
    (made `by` the caller of that name). 409 while a workflow it names is running; nothing is stored then."""
    async with _project_turn(gw, project):
        await _caught_up(gw)
        with db_errors():
            current = await workflow_readmodels.get_project(gw.pool, project)
        change = verb(current)
        if not change.changed:
            return change
        await _refuse_while_running(gw, project, list(change.named))
        events: list[Event] = change.events(by)
        for event in events:
            actions.check_size(gw, event)
        seq = 0
        for event in events:
            seq = await actions.publish(gw, event, "store the definition")
        log.info("project %s: %d definition event(s) stored (seq %d)", project, len(events), seq)
        await actions.readable(gw, seq)
        return change


# workflow runs ------------------------------------------------------------------------------------


async def _still_active(gw: Gateway, holders: Holders, revision: int) -> set[str]:
    """Which runs holding a workflow's active-run key (at `revision`) still count as running: those the
    read models show active, those requested but not projected yet, and recent claims not published yet."""
    with db_errors():
        statuses = await workflow_readmodels.run_statuses(gw.pool, list(holders))
    active = {r for r, status in statuses.items() if status in ACTIVE_WORKFLOW_RUN_STATUSES}
    key_time: float | None = None
    for wfrun_id, claimed_at in holders.items():
        if wfrun_id in statuses:
            continue
        try:
            await gw.js.get_msg(
                gw.subjects.events_stream, seq=1, subject=gw.subjects.wfrun_event(wfrun_id, "requested"), next=True
            )
            active.add(wfrun_id)  # stored, not projected yet
            continue
        except nats.js.errors.NotFoundError:
            pass
        if claimed_at is None:  # a key written before claims kept their time: the key's own time
            if key_time is None:
                claim = await gw.js.get_msg(f"KV_{gw.subjects.wfactive_bucket}", seq=revision)
                key_time = claim.time.timestamp() if claim.time is not None else 0.0
            claimed_at = key_time
        if time.time() - claimed_at < STALE_CLAIM_S:
            active.add(wfrun_id)
    return active


def _named(runs: list[str]) -> str:
    shown = ", ".join(runs[:_NAMED_RUNS])
    return shown if len(runs) <= _NAMED_RUNS else f"{shown} and {len(runs) - _NAMED_RUNS} more"


async def _claim(gw: Gateway, project: str, workflow: str, wf_id: str, wfrun_id: str, limit: int) -> None:
    """Make `wfrun_id` one of the workflow's (at most `limit`) active runs; 409 naming the active ones when
    there are `limit` already."""
    with bus_errors("claim the workflow"):
        kv = await gw.wfactive()
        try:
            active = await claim_active_run(
                kv, wf_id, wfrun_id, limit, lambda holders, revision: _still_active(gw, holders, revision)
            )
        except ActiveRunsBusy:
            raise WorkflowConflict(
                f"workflow {project}/{workflow} is being started by another request; try again"
            ) from None
    if not active:
        return
    if limit == 1:
        raise WorkflowConflict(f"workflow {project}/{workflow} already has an active run: {active[0]}")
    raise WorkflowConflict(
        f"workflow {project}/{workflow} already has {len(active)} active runs"
        f" (max_active_runs {limit}): {_named(active)}"
    )


async def _read_back(gw: Gateway, wfrun_id: str, seq: int) -> WorkflowRun | None:
    if not await actions.readable(gw, seq):
        return None
    with db_errors():
        return await workflow_readmodels.get_run(gw.pool, wfrun_id)


async def get_run(gw: Gateway, wfrun_id: str) -> WorkflowRun:
    with db_errors():
        run = await workflow_readmodels.get_run(gw.pool, wfrun_id)
    if run is None:
        raise WorkflowRunNotFound(wfrun_id)
    return run


async def _request(gw: Gateway, event: WfRunRequested) -> WorkflowRun:
    actions.check_size(gw, event)
    actions.require_bus(gw)
    with db_errors():
        row = await workflow_readmodels.get_workflow_row(gw.pool, event.project, event.workflow)
    limit = 1 if row is None else WorkflowSettings.model_validate(row["settings"]).max_active_runs
    await _claim(gw, event.project, event.workflow, event.workflow_id, event.wfrun_id, limit)
    seq = await actions.publish(gw, event, "start the workflow run")
    log.info(
        "workflow run %s of %s/%s v%d requested (seq %d)",
        event.wfrun_id,
        event.project,
        event.workflow,
        event.version,
        seq,
    )
    return await _read_back(gw, event.wfrun_id, seq) or _from_request(event)


def _from_request(event: WfRunRequested) -> WorkflowRun:
    """The run as its request describes it, for when the read models are slow to show it."""
    specs = sorted(event.steps, key=lambda s: s.place)
    steps = []
    for spec in specs:
        if event.task is not None and spec.name != event.task:
            continue
        kept = event.kept_steps.get(spec.name)
        steps.append(
            WorkflowRunStep(
                name=spec.name,
                place=spec.place,
                exec=spec.exec,
                status=StepStatus.SUCCEEDED if kept else StepStatus.PENDING,
                spad_status=spad_name(StepStatus.SUCCEEDED if kept else StepStatus.PENDING),
                attempt=0,
                run_id=kept,
                attempts=[],
                next_retry_at=None,
                survivors=[],
                held=False,
                reason=f"succeeded in {event.retry_of}" if kept else "",
            )
        )
    return WorkflowRun(
        id=event.wfrun_id,
        project=event.project,
        workflow=event.workflow,
        version=event.version,
        status=WorkflowRunStatus.QUEUED,
        task=event.task,
        requested_by=event.requested_by,
        retry_of=event.retry_of,
        failed_step=None,
        reason="",
        created_at=event.occurred_at,
        started_at=None,
        stop_requested_at=None,
        finished_at=None,
        steps=steps,
    )


async def start_run(gw: Gateway, project: str, workflow: str, task: str | None, wfrun_id: str, by: str) -> WorkflowRun:
    """Start a run of the workflow's current definition (only `task` when given)."""
    with db_errors():
        row = await workflow_readmodels.get_workflow_row(gw.pool, project, workflow)
    if row is None:
        raise DefinitionNotFoundError(f"no workflow {workflow!r} in project {project!r}")
    steps = [s["name"] for s in row["steps"]]
    if task is not None and task not in steps:
        raise invalid_input(("body", "task"), f"Value error, no task {task!r} in {project}/{workflow}", task)
    if not steps:
        raise WorkflowConflict(f"workflow {project}/{workflow} has no tasks to run")
    version = await workflow_readmodels.version_steps(gw.pool, row["workflow_id"], row["version"])
    event = WfRunRequested(
        wfrun_id=wfrun_id,
        project=project,
        workflow=workflow,
        workflow_id=row["workflow_id"],
        version=row["version"],
        steps=version,
        task=task,
        requested_by=by,
    )
    return await _request(gw, event)


async def retry_run(gw: Gateway, wfrun_id: str, new_run_id: str, by: str) -> WorkflowRun:
    """A new run of the same definition version that keeps the steps that succeeded before the first that
    did not, and runs that one and everything after it."""
    old = await get_run(gw, wfrun_id)
    if old.status in ACTIVE_WORKFLOW_RUN_STATUSES:
        raise WorkflowConflict(f"workflow run {wfrun_id} is {old.status}; stop it or let it finish first")
    if old.status is WorkflowRunStatus.SUCCEEDED:
        raise WorkflowConflict(f"workflow run {wfrun_id} succeeded; there is nothing to retry")
    kept: dict[str, str] = {}
    for step in old.steps:
        if step.status is not StepStatus.SUCCEEDED or step.run_id is None:
            break
        kept[step.name] = step.run_id
    wf_id = workflow_id(old.project, old.workflow)
    with db_errors():
        steps = await workflow_readmodels.version_steps(gw.pool, wf_id, old.version)
    event = WfRunRequested(
        wfrun_id=new_run_id,
        project=old.project,
        workflow=old.workflow,
        workflow_id=wf_id,
        version=old.version,
        steps=steps,
        task=old.task,
        retry_of=old.id,
        kept_steps=kept,
        requested_by=by,
    )
    return await _request(gw, event)


async def _record(gw: Gateway, run: WorkflowRun, event: WfRunEvent, what: str) -> WorkflowRun:
    if run.finished_at is not None:
        raise WorkflowConflict(f"workflow run {run.id} already finished ({run.status})")
    seq = await actions.publish(gw, event, what)
    log.info("workflow run %s: %s (seq %d)", run.id, event.type, seq)
    return await _read_back(gw, run.id, seq) or run


async def stop_run(gw: Gateway, wfrun_id: str, by: str) -> WorkflowRun:
    run = await get_run(gw, wfrun_id)
    return await _record(gw, run, WfRunStopRequested(wfrun_id=wfrun_id, requested_by=by), "stop the workflow run")


async def hold_step(gw: Gateway, wfrun_id: str, step: str, hold: bool, by: str) -> WorkflowRun:
    """Hold off a stop of the step (seed 004's `waiting`), or let go of that hold."""
    run = await get_run(gw, wfrun_id)
    if all(s.name != step for s in run.steps):
        raise DefinitionNotFoundError(f"workflow run {wfrun_id} has no step {step!r}")
    event: WfRunEvent = (
        WfRunStepHeld(wfrun_id=wfrun_id, step=step, held_by=by)
        if hold
        else WfRunStepReleased(wfrun_id=wfrun_id, step=step, released_by=by)
    )
    return await _record(gw, run, event, "hold the step" if hold else "release the step")
