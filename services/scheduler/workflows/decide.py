"""What happens next in a workflow run: `decide(state, now) -> Decision(events, next_wakeup)`.

Pure, with the clock passed in: the same state and time give the same events, with the same event ids
and the same derived step run ids, so a scheduler that crashes after storing some of them and decides
again stores nothing twice. The driver stores the events (then acts on them: a dispatch requests the
step's run, a stop issued stops it) and calls `decide` again at `next_wakeup` or on the next event.

The rules, in the order they are tried until none applies:
1. An attempt whose run ended is settled: retried (per `retries` and `retry_on_exit_codes` for a
   failure, per `lost_retries` for a loss), or final; a final failure fails the run unless the step
   has `continue_on_error`.
2. A retry is scheduled at an absolute time: `retry_backoff_s`, doubling with each failure, capped at
   `retry_max_backoff_s`; a lost step is restarted at once.
3. A run that is stopping or failing starts nothing: steps not started are cancelled (stop) or skipped
   (failure), waiting retries cancelled, running steps stopped, a held one only once it is released
   or its `hold_max_s` has passed.
4. Otherwise due retries start, and the sequence goes on by place: an `await` step waits for the
   previous ones to pass, a `parallel` one starts and lets the sequence go on.
5. When no step is left to run or wait for, the run finishes, its status from its steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from scriptbus.events.statuses import RunStatus
from scriptbus.events.workflows import (
    StepExec,
    StepStatus,
    WfRunEvent,
    WfRunFinished,
    WfRunStepCancelled,
    WfRunStepDispatched,
    WfRunStepEvent,
    WfRunStepRetryScheduled,
    WfRunStepSettled,
    WfRunStepSkipped,
    WfRunStepStopIssued,
    WorkflowRunStatus,
    decision_id,
    step_run_id,
)
from scriptbus.scheduler.workflows.state import FAILURES, Attempt, StepState, WorkflowRunState, hold_deadline


@dataclass(frozen=True)
class Decision:
    events: tuple[WfRunEvent, ...]
    # When to decide again if no event comes first: a retry falls due, a hold runs out. None: only on events.
    next_wakeup: datetime | None


def retry_delay_s(step: StepState) -> float:
    """Delay before the next attempt: none after a loss; after the n-th failure the initial backoff
    doubled n-1 times, capped."""
    current = step.current
    if current is not None and current.status is RunStatus.LOST:
        return 0.0
    failures = step.ended(FAILURES)
    spec = step.spec
    return min(spec.retry_backoff_s * 2.0 ** min(max(failures - 1, 0), 64), spec.retry_max_backoff_s)


def decide(state: WorkflowRunState, now: datetime) -> Decision:
    """The events that follow from `state` at `now`, each applied before the next rule is tried."""
    work = copy.deepcopy(state)
    decided: list[WfRunEvent] = []
    # Every round changes some step for good or finishes the run, so this bound is never reached.
    for _ in range(8 * len(work.steps) + 8):
        events = _next_events(work, now)
        if not events:
            return Decision(tuple(decided), _next_wakeup(work))
        for event in events:
            work.apply(event)
        decided.extend(events)
    raise RuntimeError(f"workflow run {state.wfrun_id}: decisions did not settle")


def _next_events(state: WorkflowRunState, now: datetime) -> list[WfRunEvent]:
    if state.finished:
        return []
    for rule in (_settle, _schedule_retries, _wind_down, _start, _finish):
        events = rule(state, now)
        if events:
            return events
    return []


_E = TypeVar("_E", bound=WfRunEvent)


def _decided(event: _E, now: datetime, attempt: int = 0) -> _E:
    """`event` as a decision: taken at `now`, its id derived from what was decided."""
    step = event.step if isinstance(event, WfRunStepEvent) else ""
    return event.model_copy(
        update={"event_id": decision_id(event.wfrun_id, event.type, step, attempt), "occurred_at": now}
    )


def _verdict(state: WorkflowRunState, step: StepState, attempt: Attempt) -> tuple[bool, bool]:
    """(will_retry, fails_run) for an attempt that just ended."""
    if attempt.status is RunStatus.SUCCEEDED or attempt.stop_issued or state.winding_down:
        # Our own stop, or an ending while the run winds down anyway: nothing more to decide.
        return False, False
    spec = step.spec
    if attempt.status is RunStatus.LOST:
        if step.ended({RunStatus.LOST}) < spec.lost_retries:
            return True, False
    elif attempt.status in FAILURES and step.ended(FAILURES) < spec.retries:
        codes = spec.retry_on_exit_codes
        if codes is None or (attempt.status is RunStatus.FAILED and attempt.exit_code in codes):
            return True, False
    return False, not spec.continue_on_error


def _settle(state: WorkflowRunState, now: datetime) -> list[WfRunEvent]:
    events: list[WfRunEvent] = []
    for step in state.steps.values():
        attempt = step.current
        if attempt is None or not attempt.finished or attempt.settled:
            continue
        will_retry, fails_run = _verdict(state, step, attempt)
        events.append(
            _decided(
                WfRunStepSettled(
                    wfrun_id=state.wfrun_id,
                    step=step.name,
                    attempt=attempt.attempt,
                    run_id=attempt.run_id,
                    status=attempt.status,
                    exit_code=attempt.exit_code,
                    signal=attempt.signal,
                    survivors=list(attempt.survivors),
                    will_retry=will_retry,
                    fails_run=fails_run,
                    reason=attempt.reason,
                ),
                now,
                attempt.attempt,
            )
        )
    return events


def _schedule_retries(state: WorkflowRunState, now: datetime) -> list[WfRunEvent]:
    if state.winding_down:
        return []
    events: list[WfRunEvent] = []
    for step in state.steps.values():
        if step.status is StepStatus.RETRYING and step.next_retry_at is None:
            delay = retry_delay_s(step)
            events.append(
                _decided(
                    WfRunStepRetryScheduled(
                        wfrun_id=state.wfrun_id,
                        step=step.name,
                        attempt=step.attempt + 1,
                        retry_at=now + timedelta(seconds=delay),
                        delay_s=delay,
                    ),
                    now,
                    step.attempt + 1,
                )
            )
    return events


def _wind_down(state: WorkflowRunState, now: datetime) -> list[WfRunEvent]:
    if not state.winding_down:
        return []
    stopping = state.stop_requested_at is not None
    if stopping:
        reason = f"workflow run stopped ({state.stop_reason})" if state.stop_reason else "workflow run stopped"
    else:
        reason = f"step {state.failed_step} failed"
    events: list[WfRunEvent] = []
    for step in state.steps.values():
        if step.status is StepStatus.PENDING and not stopping:
            events.append(_decided(WfRunStepSkipped(wfrun_id=state.wfrun_id, step=step.name, reason=reason), now))
        elif step.status in (StepStatus.PENDING, StepStatus.RETRYING):
            cancelled = WfRunStepCancelled(wfrun_id=state.wfrun_id, step=step.name, reason=reason)
            events.append(_decided(cancelled, now, step.attempt))
        elif step.status in (StepStatus.QUEUED, StepStatus.RUNNING) and step.current is not None:
            deadline = hold_deadline(state, step)
            if deadline is not None and now < deadline:
                continue  # held: the stop waits for the release or the deadline
            attempt = step.current
            if not attempt.finished and not attempt.stop_issued:
                stop = WfRunStepStopIssued(
                    wfrun_id=state.wfrun_id,
                    step=step.name,
                    attempt=attempt.attempt,
                    run_id=attempt.run_id,
                    reason=reason if deadline is None else f"{reason}; hold not released in time",
                )
                events.append(_decided(stop, now, attempt.attempt))
    return events


def _dispatch(state: WorkflowRunState, step: StepState, now: datetime) -> WfRunStepDispatched:
    attempt = step.attempt + 1
    dispatched = WfRunStepDispatched(
        wfrun_id=state.wfrun_id,
        step=step.name,
        attempt=attempt,
        run_id=step_run_id(state.wfrun_id, step.name, attempt),
    )
    return _decided(dispatched, now, attempt)


def _start(state: WorkflowRunState, now: datetime) -> list[WfRunEvent]:
    if state.winding_down:
        return []
    events: list[WfRunEvent] = []
    for step in state.steps.values():
        if step.status is StepStatus.RETRYING and step.next_retry_at is not None and step.next_retry_at <= now:
            events.append(_dispatch(state, step, now))
    for step in state.steps.values():
        if step.passed:
            continue
        if step.status is not StepStatus.PENDING:
            break  # an await step still running, or retrying: the sequence waits for it
        events.append(_dispatch(state, step, now))
        if step.spec.exec is not StepExec.PARALLEL:
            break
    return events


def final_status(state: WorkflowRunState) -> WorkflowRunStatus:
    """The run's status once no step is left to run: from the failure that ended it, else from the stop,
    else success."""
    if state.failed_step is not None:
        return WorkflowRunStatus.TIMED_OUT if state.failure is RunStatus.TIMED_OUT else WorkflowRunStatus.FAILED
    if state.stop_requested_at is not None:
        # Whoever sent the signals (we, or an executor acting on the stop while we were down), a step
        # that needed SIGKILL makes the stop `killed`; one that did not fail the run was not killed by hand.
        attempts = [a for s in state.steps.values() for a in s.attempts]
        if any(a.status is RunStatus.KILLED or a.survivors for a in attempts):
            return WorkflowRunStatus.KILLED
        if not any(a.ran for a in attempts):
            return WorkflowRunStatus.CANCELLED
        return WorkflowRunStatus.STOPPED
    return WorkflowRunStatus.SUCCEEDED


def _finish(state: WorkflowRunState, now: datetime) -> list[WfRunEvent]:
    if not all(step.final for step in state.steps.values()):
        return []
    status = final_status(state)
    if state.failed_step is not None:
        reason = f"step {state.failed_step} ended {state.steps[state.failed_step].status.value}"
    elif state.stop_requested_at is not None:
        reason = state.stop_reason
    else:
        reason = ""
    return [_decided(WfRunFinished(wfrun_id=state.wfrun_id, status=status, reason=reason), now)]


def _next_wakeup(state: WorkflowRunState) -> datetime | None:
    if state.finished:
        return None
    times: list[datetime] = []
    for step in state.steps.values():
        if not state.winding_down and step.status is StepStatus.RETRYING and step.next_retry_at is not None:
            times.append(step.next_retry_at)
        current = step.current
        deadline = hold_deadline(state, step)
        if deadline is not None and current is not None and not current.finished and not current.stop_issued:
            times.append(deadline)
    return min(times) if times else None
