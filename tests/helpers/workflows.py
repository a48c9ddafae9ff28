"""A workflow run driven as the scheduler drives it, with the clock in the test's hands.

Every decision is applied to the state and kept, as the driver stores it; the test plays the
executors' part (a step's run starts, ends) and the users' (stop, hold, release).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from scriptbus.events import RunFinished, RunStarted, RunStatus
from scriptbus.events.envelope import Event
from scriptbus.events.workflows import (
    StepSpec,
    WfRunEvent,
    WfRunRequested,
    WfRunStepDispatched,
    WfRunStepHeld,
    WfRunStepReleased,
    WfRunStopRequested,
    WorkflowRunStatus,
    workflow_id,
)
from scriptbus.scheduler.workflows.decide import Decision, decide
from scriptbus.scheduler.workflows.state import WorkflowRunState

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def step(name: str, place: int, exec: str = "await", **fields: Any) -> StepSpec:
    fields.setdefault("function", "simple")
    return StepSpec.model_validate({"name": name, "place": place, "exec": exec, **fields})


def request(
    steps: list[StepSpec], wfrun_id: str = "wr-1", task: str | None = None, kept: dict[str, str] | None = None
) -> WfRunRequested:
    return WfRunRequested(
        wfrun_id=wfrun_id,
        project="pr1",
        workflow="wf1",
        workflow_id=workflow_id("pr1", "wf1"),
        version=1,
        steps=steps,
        task=task,
        kept_steps=kept or {},
        retry_of="wr-0" if kept else None,
        occurred_at=T0,
    )


class WorkflowRunSim:
    def __init__(self, req: WfRunRequested) -> None:
        self.now = T0
        self.state = WorkflowRunState.requested(req)
        self.events: list[Event] = [req]

    # the scheduler -------------------------------------------------------------------------------
    def decide(self) -> Decision:
        decision = decide(self.state, self.now)
        for event in decision.events:
            self.record(event)
        return decision

    def record(self, event: Event) -> None:
        self.state.apply(event)
        self.events.append(event)

    def at(self, seconds: float) -> WorkflowRunSim:
        self.now = T0 + timedelta(seconds=seconds)
        return self

    # the executors -------------------------------------------------------------------------------
    def run_id(self, step: str) -> str:
        run_id = self.state.steps[step].run_id
        assert run_id is not None, f"{step} has no run"
        return run_id

    def started(self, *steps: str) -> None:
        for name in steps:
            self.record(
                RunStarted(run_id=self.run_id(name), host="h1", pid=4000 + len(self.events), executor_id="ex-1")
            )

    def finished(self, name: str, status: RunStatus, exit_code: int | None = None, **fields: Any) -> None:
        if exit_code is None and status is RunStatus.SUCCEEDED:
            exit_code = 0
        self.record(
            RunFinished(run_id=self.run_id(name), status=status, exit_code=exit_code, occurred_at=self.now, **fields)
        )

    def succeeded(self, name: str) -> None:
        self.finished(name, RunStatus.SUCCEEDED)

    def failed(self, name: str, exit_code: int = 1) -> None:
        self.finished(name, RunStatus.FAILED, exit_code)

    # the users -----------------------------------------------------------------------------------
    def stop(self) -> None:
        self.record(WfRunStopRequested(wfrun_id=self.state.wfrun_id, requested_by="alice", occurred_at=self.now))

    def hold(self, name: str, attempt: int | None = None) -> None:
        self.record(WfRunStepHeld(wfrun_id=self.state.wfrun_id, step=name, attempt=attempt, occurred_at=self.now))

    def release(self, name: str) -> None:
        self.record(WfRunStepReleased(wfrun_id=self.state.wfrun_id, step=name, occurred_at=self.now))

    # what users see ------------------------------------------------------------------------------
    def status(self) -> WorkflowRunStatus:
        return self.state.status

    def statuses(self) -> dict[str, str]:
        return {name: s.status.value for name, s in self.state.steps.items()}


def kinds(decision: Decision) -> list[tuple[str, str]]:
    """(event type without `wfrun.`, step or '') of each decided event."""
    return [(e.type.removeprefix("wfrun."), getattr(e, "step", "")) for e in decision.events]


def dispatched(events: list[Event] | tuple[WfRunEvent, ...]) -> list[tuple[str, int]]:
    return [(e.step, e.attempt) for e in events if isinstance(e, WfRunStepDispatched)]
