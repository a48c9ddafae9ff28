"""What a step's status is called: which step status a run's ending gives, and seed 004's name for it
(`success0`, `error(1)`, `terminated(-15)`, `rerun`, `immortal(4242)`, …). The scheduler, the recorder
and the gateway must agree on both, so they live here."""

from __future__ import annotations

from collections.abc import Sequence

from scriptbus.events.statuses import RunStatus
from scriptbus.events.workflows import FINAL_STEP_STATUSES, StepStatus

# A run's ending names the step's final status when nothing follows it.
STEP_STATUS_OF_RUN: dict[RunStatus, StepStatus] = {
    RunStatus.SUCCEEDED: StepStatus.SUCCEEDED,
    RunStatus.FAILED: StepStatus.FAILED,
    RunStatus.TERMINATED: StepStatus.TERMINATED,
    RunStatus.STOPPED: StepStatus.STOPPED,
    RunStatus.KILLED: StepStatus.KILLED,
    RunStatus.TIMED_OUT: StepStatus.TIMED_OUT,
    RunStatus.CANCELLED: StepStatus.CANCELLED,
    RunStatus.LOST: StepStatus.LOST,
}

# Run endings that mean its process had started.
ENDINGS_AFTER_A_START: frozenset[RunStatus] = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.TERMINATED,
        RunStatus.STOPPED,
        RunStatus.KILLED,
        RunStatus.TIMED_OUT,
    }
)


def spad_name(
    status: StepStatus,
    *,
    held: bool = False,
    exit_code: int | None = None,
    signal: int | None = None,
    survivors: Sequence[int] = (),
    ran: bool = False,
) -> str:
    """The step's status in seed 004's words. `exit_code`, `signal` and `survivors` are those of its latest
    attempt; `ran` says whether any attempt's process ever started."""
    if held and status in (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.STOPPING):
        return "waiting"
    if survivors and status in FINAL_STEP_STATUSES:
        return f"immortal({survivors[0]})"
    if status in (StepStatus.PENDING, StepStatus.QUEUED):
        return "new"
    if status is StepStatus.RETRYING:
        return "rerun"
    if status is StepStatus.SUCCEEDED:
        return "success0"
    if status is StepStatus.FAILED:
        return f"error({exit_code})" if exit_code is not None else "error"
    if status in (StepStatus.TERMINATED, StepStatus.TIMED_OUT):
        return f"terminated(-{signal})" if signal else "terminated"
    if status is StepStatus.SKIPPED:
        return "not run"
    if status is StepStatus.CANCELLED:
        # A retry that a stop cancelled had run before: to the seed's users that step was stopped.
        return "stopped" if ran else "not run"
    return status.value  # running, stopping, stopped, killed, lost: the seed's own words
