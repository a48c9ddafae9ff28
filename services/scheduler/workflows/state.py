"""A workflow run's state, folded from its own events and its step runs' `run.started` / `run.finished`.

The fold is mechanical: every rule of what happens next lives in `decide`, which records its choices as
events; applying them here only writes them down. Applying an event twice, or a step run's event before
the dispatch that names its run, gives the same state as applying each once in order, so the state can
be rebuilt from the stream after a crash whatever the interleaving of the subscriptions that read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scriptbus.events.envelope import Event
from scriptbus.events.runs import RunEvent, RunFinished, RunStarted
from scriptbus.events.statuses import TERMINAL_STATUSES, RunStatus
from scriptbus.events.workflow_status import ENDINGS_AFTER_A_START, STEP_STATUS_OF_RUN, spad_name
from scriptbus.events.workflows import (
    ACTIVE_STEP_STATUSES,
    FINAL_STEP_STATUSES,
    StepExec,
    StepSpec,
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
    WorkflowRunStatus,
)

# Endings that spend the `retries` budget; `lost` spends `lost_retries`; our own stops spend nothing.
FAILURES: frozenset[RunStatus] = frozenset({RunStatus.FAILED, RunStatus.TERMINATED, RunStatus.TIMED_OUT})


@dataclass
class Attempt:
    """One run of one step. `status` follows the run: queued, running, then how it ended."""

    attempt: int
    run_id: str
    dispatched_at: datetime
    status: RunStatus = RunStatus.QUEUED
    started_at: datetime | None = None
    host: str | None = None
    pid: int | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    survivors: list[int] = field(default_factory=list)
    reason: str = ""
    # The scheduler has recorded what follows this ending (`wfrun.step_settled`).
    settled: bool = False
    stop_issued: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def ran(self) -> bool:
        """Its process started, whether or not we saw `run.started` (an ending like `stopped` says so too)."""
        return self.started_at is not None or self.status in ENDINGS_AFTER_A_START


@dataclass
class StepState:
    spec: StepSpec
    status: StepStatus = StepStatus.PENDING
    attempts: list[Attempt] = field(default_factory=list)
    next_retry_at: datetime | None = None
    held: bool = False
    held_at: datetime | None = None
    # The run that succeeded in the workflow run this one retries (the step is not run again).
    kept_run_id: str | None = None
    reason: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def attempt(self) -> int:
        """The latest attempt's number, 0 before the first."""
        return len(self.attempts)

    @property
    def run_id(self) -> str | None:
        current = self.current
        return current.run_id if current else self.kept_run_id

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STEP_STATUSES

    @property
    def final(self) -> bool:
        return self.status in FINAL_STEP_STATUSES

    def ended(self, statuses: Iterable[RunStatus]) -> int:
        """How many settled attempts ended with one of `statuses`."""
        wanted = set(statuses)
        return sum(1 for a in self.attempts if a.settled and a.status in wanted)

    @property
    def passed(self) -> bool:
        """The sequence may go past this step: done, or running in the background, or failed harmlessly."""
        if self.status is StepStatus.SUCCEEDED:
            return True
        if self.spec.exec is StepExec.PARALLEL and self.status is not StepStatus.PENDING:
            return True
        return self.final and self.spec.continue_on_error


@dataclass
class WorkflowRunState:
    wfrun_id: str
    project: str
    workflow: str
    workflow_id: str
    version: int
    requested_at: datetime
    steps: dict[str, StepState]  # in place order; a single-task run holds that step only
    task: str | None = None
    requested_by: str = ""
    retry_of: str | None = None
    status: WorkflowRunStatus = WorkflowRunStatus.QUEUED
    stop_requested_at: datetime | None = None
    stop_reason: str = ""
    # The step whose failure ends the run, and how its last attempt ended.
    failed_step: str | None = None
    failed_at: datetime | None = None
    failure: RunStatus | None = None
    finished_at: datetime | None = None
    reason: str = ""
    run_ids: dict[str, tuple[str, int]] = field(default_factory=dict)  # step run id -> (step, attempt)
    applied: set[str] = field(default_factory=set)
    # Step-run events that came before the dispatch naming their run, by run id.
    early: dict[str, list[RunStarted | RunFinished]] = field(default_factory=dict)

    @classmethod
    def requested(cls, event: WfRunRequested) -> WorkflowRunState:
        specs = sorted(event.steps, key=lambda s: s.place)
        if event.task is not None:
            specs = [s for s in specs if s.name == event.task]
        steps = {s.name: StepState(spec=s) for s in specs}
        for name, run_id in event.kept_steps.items():
            if name in steps:
                steps[name].status = StepStatus.SUCCEEDED
                steps[name].kept_run_id = run_id
                steps[name].reason = f"succeeded in {event.retry_of or 'an earlier run'}"
        state = cls(
            wfrun_id=event.wfrun_id,
            project=event.project,
            workflow=event.workflow,
            workflow_id=event.workflow_id,
            version=event.version,
            requested_at=event.occurred_at,
            steps=steps,
            task=event.task,
            requested_by=event.requested_by,
            retry_of=event.retry_of,
        )
        state.applied.add(event.event_id)
        return state

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def winding_down(self) -> bool:
        """Nothing new may start: a stop was asked for, or a step failed for good."""
        return self.stop_requested_at is not None or self.failed_step is not None

    @property
    def winding_down_since(self) -> datetime | None:
        times = [t for t in (self.stop_requested_at, self.failed_at) if t is not None]
        return min(times) if times else None

    def step_of_run(self, run_id: str) -> tuple[StepState, Attempt] | None:
        found = self.run_ids.get(run_id)
        if found is None:
            return None
        step = self.steps[found[0]]
        return step, step.attempts[found[1] - 1]

    # the fold -------------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Write one event down. Events of other runs and unknown steps are ignored."""
        if event.event_id in self.applied:
            return
        if isinstance(event, RunEvent):
            if isinstance(event, RunStarted | RunFinished):
                self._apply_run_event(event)
            return
        if getattr(event, "wfrun_id", None) != self.wfrun_id:
            return
        self.applied.add(event.event_id)
        if isinstance(event, WfRunStopRequested):
            if self.stop_requested_at is None:
                self.stop_requested_at = event.occurred_at
                self.stop_reason = event.reason
                if not self.finished:
                    self.status = WorkflowRunStatus.STOPPING
        elif isinstance(event, WfRunFinished):
            if self.finished_at is None:
                self.finished_at = event.occurred_at
                self.status = event.status
                self.reason = event.reason
        elif isinstance(event, WfRunStepDispatched):
            self._dispatched(event)
        elif isinstance(event, WfRunStepSettled):
            self._settled(event)
        else:
            step = self.steps.get(getattr(event, "step", ""))
            if step is not None:
                _apply_to_step(step, event)

    def _dispatched(self, event: WfRunStepDispatched) -> None:
        step = self.steps.get(event.step)
        if step is None or any(a.attempt == event.attempt for a in step.attempts):
            return
        step.attempts.append(Attempt(attempt=event.attempt, run_id=event.run_id, dispatched_at=event.occurred_at))
        step.status = StepStatus.QUEUED
        step.next_retry_at = None
        step.held = False  # a hold belongs to the process that asked for it
        step.held_at = None
        self.run_ids[event.run_id] = (event.step, len(step.attempts))
        if self.status is WorkflowRunStatus.QUEUED:
            self.status = WorkflowRunStatus.RUNNING
        for early in self.early.pop(event.run_id, []):
            self._apply_run_event(early)

    def _apply_run_event(self, event: RunStarted | RunFinished) -> None:
        found = self.step_of_run(event.run_id)
        if found is None:
            waiting = self.early.setdefault(event.run_id, [])
            if all(e.event_id != event.event_id for e in waiting):
                waiting.append(event)
            return
        self.applied.add(event.event_id)
        step, attempt = found
        if isinstance(event, RunStarted):
            if attempt.started_at is None:
                attempt.started_at = event.occurred_at
                attempt.host = event.host
                attempt.pid = event.pid
            if attempt.status is RunStatus.QUEUED:
                attempt.status = RunStatus.RUNNING
            if attempt is step.current and step.status is StepStatus.QUEUED:
                step.status = StepStatus.RUNNING
        elif not attempt.finished and event.status in TERMINAL_STATUSES:  # the first `finished` of a run wins
            attempt.status = event.status
            attempt.finished_at = event.occurred_at
            attempt.exit_code = event.exit_code
            attempt.signal = event.signal
            attempt.survivors = list(event.survivors)
            attempt.host = attempt.host or event.host
            attempt.reason = event.reason

    def _settled(self, event: WfRunStepSettled) -> None:
        step = self.steps.get(event.step)
        if step is None:
            return
        attempt = next((a for a in step.attempts if a.attempt == event.attempt), None)
        if attempt is None:
            return
        if attempt.settled:
            return
        if not attempt.finished:  # the settlement records the ending even if run.finished is not read
            attempt.status = event.status
            attempt.finished_at = event.occurred_at
            attempt.exit_code = event.exit_code
            attempt.signal = event.signal
            attempt.survivors = list(event.survivors)
        attempt.settled = True
        if attempt is step.current and not step.final:
            step.status = StepStatus.RETRYING if event.will_retry else STEP_STATUS_OF_RUN[attempt.status]
            step.next_retry_at = None
        if event.fails_run and self.failed_step is None:
            self.failed_step = event.step
            self.failed_at = event.occurred_at
            self.failure = attempt.status


def _apply_to_step(step: StepState, event: Event) -> None:
    current = step.current
    if isinstance(event, WfRunStepRetryScheduled):
        if step.status is StepStatus.RETRYING and event.attempt == step.attempt + 1:
            step.next_retry_at = event.retry_at
    elif isinstance(event, WfRunStepStopIssued):
        attempt = next((a for a in step.attempts if a.attempt == event.attempt), None)
        if attempt is not None:
            attempt.stop_issued = True
            if attempt is current and step.status in (StepStatus.QUEUED, StepStatus.RUNNING):
                step.status = StepStatus.STOPPING
    elif isinstance(event, WfRunStepHeld | WfRunStepReleased):
        if event.attempt is not None and event.attempt != step.attempt:
            return  # an earlier attempt's process let go, or asked too late
        step.held = isinstance(event, WfRunStepHeld)
        step.held_at = event.occurred_at if step.held else None
    elif isinstance(event, WfRunStepSkipped):
        if step.status is StepStatus.PENDING:
            step.status = StepStatus.SKIPPED
            step.reason = event.reason
    elif isinstance(event, WfRunStepCancelled) and step.status in (StepStatus.PENDING, StepStatus.RETRYING):
        step.status = StepStatus.CANCELLED
        step.next_retry_at = None
        step.reason = event.reason


def fold(events: Iterable[Event]) -> WorkflowRunState:
    """The state of the workflow run whose `wfrun.requested` is among `events`, after all of them."""
    events = list(events)
    request = next((e for e in events if isinstance(e, WfRunRequested)), None)
    if request is None:
        raise ValueError("no wfrun.requested among the events")
    state = WorkflowRunState.requested(request)
    for event in events:
        state.apply(event)
    return state


def hold_deadline(state: WorkflowRunState, step: StepState) -> datetime | None:
    """Until when a held step defers its stop: `hold_max_s` after the run began to wind down."""
    since = state.winding_down_since
    if not step.held or since is None:
        return None
    return since + timedelta(seconds=step.spec.hold_max_s)


def spad_status(step: StepState) -> str:
    """The step's status in seed 004's words (`success0`, `error(1)`, `terminated(-15)`, `rerun`, …)."""
    current = step.current
    return spad_name(
        step.status,
        held=step.held,
        exit_code=current.exit_code if current else None,
        signal=current.signal if current else None,
        survivors=current.survivors if current else (),
        ran=any(a.ran for a in step.attempts),
    )


def kept_on_retry(state: WorkflowRunState) -> dict[str, str]:
    """What `POST /workflow-runs/{id}/retry` keeps: the steps that succeeded before the first one that did
    not (by place), each with the run that did it. The rest runs again."""
    kept: dict[str, str] = {}
    for step in state.steps.values():
        if step.status is not StepStatus.SUCCEEDED or step.run_id is None:
            break
        kept[step.name] = step.run_id
    return kept
