"""Workflow definitions and workflow runs: their events, the step specification the events carry, their
statuses, and the ids derived from names and attempts.

A workflow run's events are the scheduler's decisions, stored before their effects. Ids that an effect
depends on (a step run's id, a decision's event id) are derived from what was decided, so re-doing an
effect after a crash names the same run and JetStream drops the duplicate message.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from scriptbus.events.envelope import Event
from scriptbus.events.statuses import RunStatus
from scriptbus.events.subjects import valid_token

# Fixed forever: changing it would rename every derived id.
_NAMESPACE = uuid.UUID("5b0c2f1e-7d0a-4c1e-9a53-2f1b8c6d4e70")

# Project, workflow and step names: they appear in URLs (`/projects/pr1/workflows/wf1`) and in derived ids.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def valid_name(value: str) -> bool:
    return bool(_NAME.match(value))


def project_id(project: str) -> str:
    """The aggregate id of a project: one per name, the same on every host."""
    return str(uuid.uuid5(_NAMESPACE, f"project/{project}"))


def workflow_id(project: str, workflow: str) -> str:
    """The aggregate id of a workflow, whatever its version: one per (project, name)."""
    return str(uuid.uuid5(_NAMESPACE, f"workflow/{project}/{workflow}"))


def step_run_id(wfrun_id: str, step: str, attempt: int) -> str:
    """The run id of one attempt of one step: a scheduler that dispatches it twice names the same run."""
    return str(uuid.uuid5(_NAMESPACE, f"step-run/{wfrun_id}/{step}/{attempt}"))


def step_fanout_id(wfrun_id: str, step: str, attempt: int) -> str:
    """The fan-out of one attempt of a `fan_out` step: derived like a step run id, so a scheduler that
    requests it again after a crash names the same fan-out (and the same host runs)."""
    return str(uuid.uuid5(_NAMESPACE, f"step-fanout/{wfrun_id}/{step}/{attempt}"))


def decision_id(wfrun_id: str, kind: str, step: str = "", attempt: int = 0) -> str:
    """The event id of a scheduler decision: the same decision taken twice is one message on the stream."""
    return str(uuid.uuid5(_NAMESPACE, f"decision/{wfrun_id}/{kind}/{step}/{attempt}"))


# statuses -----------------------------------------------------------------------------------------


class WorkflowRunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # stopped on request, every step ended within its grace period
    KILLED = "killed"  # stopped on request, some step needed SIGKILL (or survived it)
    TIMED_OUT = "timed_out"  # failed because a step ran out of its timeout_s
    CANCELLED = "cancelled"  # stopped on request before any step had started


ACTIVE_WORKFLOW_RUN_STATUSES: frozenset[WorkflowRunStatus] = frozenset(
    {WorkflowRunStatus.QUEUED, WorkflowRunStatus.RUNNING, WorkflowRunStatus.STOPPING}
)


class StepStatus(StrEnum):
    PENDING = "pending"  # not reached yet
    QUEUED = "queued"  # its run is requested, no executor has started it
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt ended badly; the next one waits for next_retry_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TERMINATED = "terminated"
    STOPPING = "stopping"
    STOPPED = "stopped"
    KILLED = "killed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"  # never (re)started because the workflow run was stopped or failed
    SKIPPED = "skipped"  # a later sequential step of a failed workflow run
    LOST = "lost"


ACTIVE_STEP_STATUSES: frozenset[StepStatus] = frozenset(
    {StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.STOPPING, StepStatus.RETRYING}
)
FINAL_STEP_STATUSES: frozenset[StepStatus] = frozenset(set(StepStatus) - ACTIVE_STEP_STATUSES - {StepStatus.PENDING})


# the step specification ---------------------------------------------------------------------------


class StepExec(StrEnum):
    AWAIT = "await"  # the sequence waits for it
    PARALLEL = "parallel"  # started in the background; the sequence goes on


class StepFanOut(BaseModel):
    """A step's `fan_out`: each attempt runs on every live executor matching at dispatch, as a fan-out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool: str | None = None  # None: any pool
    labels: dict[str, str] = Field(default_factory=dict)
    hosts: list[str] = Field(default_factory=list, max_length=1000)
    max_parallel: int | None = Field(default=None, ge=1, le=10_000)
    max_failures: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str | None) -> str | None:
        if value is not None and not valid_token(value):
            raise ValueError("must match [A-Za-z0-9_-]{1,128}")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not valid_token(h)]
        if bad:
            raise ValueError(f"host names must match [A-Za-z0-9_-]{{1,128}}: {bad!r}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if any(not k or not v or len(k) > 128 or len(v) > 128 for k, v in value.items()):
            raise ValueError("label names and values must be 1 to 128 characters")
        return value


class StepSpec(BaseModel):
    """One step ("task") of a workflow, as stored in its definition and snapshotted into each run.

    Seed 004's fields (`id`, `name`, `place`, `exec`, `function`, `params`) plus our own; every default
    is the seed's where it has one (one restart, a 6 s grace).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int | None = None  # seed 004's number of the task inside its workflow; informational
    name: str
    place: int = Field(ge=0)
    exec: StepExec = StepExec.AWAIT
    # A saved command's name (params become $1…), else a program on the executor's PATH.
    function: str | None = None
    params: list[str] = Field(default_factory=list)
    script: str | None = None
    retries: int = Field(default=1, ge=0, le=1000)
    retry_backoff_s: float = Field(default=1.0, ge=0)
    retry_max_backoff_s: float = Field(default=300.0, ge=0)
    retry_on_exit_codes: list[int] | None = None
    # Restarts after the step's executor vanished: a budget apart from `retries`, a loss is not the script's fault.
    lost_retries: int = Field(default=3, ge=0, le=1000)
    timeout_s: float | None = Field(default=None, gt=0)
    stop_grace_s: float = Field(default=6.0, ge=0)
    # How long a held step ("waiting" in seed 004) may defer a stop.
    hold_max_s: float = Field(default=600.0, ge=0)
    env: dict[str, str] = Field(default_factory=dict)
    pool: str = "default"
    host: str | None = None
    continue_on_error: bool = False
    # Each attempt is a fan-out over the matching live executors instead of one run.
    fan_out: StepFanOut | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not valid_name(value):
            raise ValueError(f"must match {NAME_PATTERN}")
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any) -> Any:
        # The seed writes params as strings; a bare number means the same argument.
        if isinstance(value, list):
            return [str(p) if isinstance(p, int | float) and not isinstance(p, bool) else p for p in value]
        return value

    @field_validator("pool", "host")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not valid_token(value):
            raise ValueError("must match [A-Za-z0-9_-]{1,128}")
        return value

    @field_validator("fan_out")
    @classmethod
    def _fan_out(cls, value: StepFanOut | None, info: ValidationInfo) -> StepFanOut | None:
        if value is not None and info.data.get("host") is not None:
            raise ValueError("cannot be combined with `host`: name the hosts in `fan_out.hosts`")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StepSpec:
        if (self.function is None) == (self.script is None):
            raise ValueError("give exactly one of `function` (a saved command or a program) and `script`")
        if self.function is not None and not self.function.strip():
            raise ValueError("`function` must not be empty")
        if self.retry_max_backoff_s < self.retry_backoff_s:
            raise ValueError("`retry_max_backoff_s` must be at least `retry_backoff_s`")
        return self


class WorkflowSettings(BaseModel):
    """What a workflow says beyond its steps."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    max_active_runs: int = Field(default=1, ge=1, le=10_000)


# definition events --------------------------------------------------------------------------------


class ProjectEvent(Event):
    project_id: str
    project: str


class ProjectDefined(ProjectEvent):
    """A project came to be (seed 004's `create` of a project that did not exist)."""

    type: Literal["project.defined"] = "project.defined"
    seed_id: int | None = None
    defined_by: str = ""


class ProjectRemoved(ProjectEvent):
    """An empty project was removed."""

    type: Literal["project.removed"] = "project.removed"
    removed_by: str = ""


class WorkflowEvent(Event):
    workflow_id: str
    project: str
    workflow: str
    version: int = Field(ge=1)


class WorkflowDefined(WorkflowEvent):
    """A whole new version of a workflow's definition; it never patches the previous one."""

    type: Literal["workflow.defined"] = "workflow.defined"
    seed_id: int | None = None
    settings: WorkflowSettings = Field(default_factory=WorkflowSettings)
    steps: list[StepSpec]
    defined_by: str = ""


class WorkflowRemoved(WorkflowEvent):
    """The workflow is gone; `version` is the one it had. Its runs keep their own snapshot."""

    type: Literal["workflow.removed"] = "workflow.removed"
    removed_by: str = ""


# workflow run events ------------------------------------------------------------------------------


class WfRunEvent(Event):
    wfrun_id: str


class WfRunStepEvent(WfRunEvent):
    step: str


class WfRunRequested(WfRunEvent):
    """A workflow run was asked for. It carries the definition it runs, so later edits never reach it."""

    type: Literal["wfrun.requested"] = "wfrun.requested"
    project: str
    workflow: str
    workflow_id: str
    version: int
    steps: list[StepSpec]
    # Only this step runs (seed 004's `run -t`).
    task: str | None = None
    requested_by: str = ""
    # A retry of a failed run keeps the steps that had succeeded there: step name -> the run that did it.
    retry_of: str | None = None
    kept_steps: dict[str, str] = Field(default_factory=dict)
    # The schedule whose tick started this run (`scriptbus.events.schedules`).
    schedule_id: str | None = None

    @model_validator(mode="after")
    def _names(self) -> WfRunRequested:
        names = {s.name for s in self.steps}
        if self.task is not None and self.task not in names:
            raise ValueError(f"task {self.task!r} is not a step of {self.project}/{self.workflow}")
        unknown = set(self.kept_steps) - names
        if unknown:
            raise ValueError(f"kept steps {sorted(unknown)} are not steps of {self.project}/{self.workflow}")
        return self


class WfRunStepDispatched(WfRunStepEvent):
    """An attempt of a step is started: its run (id derived from run, step and attempt) is requested next."""

    type: Literal["wfrun.step_dispatched"] = "wfrun.step_dispatched"
    attempt: int = Field(ge=1)
    run_id: str


class WfRunStepSettled(WfRunStepEvent):
    """An attempt's run ended, and what follows: another attempt, or the step's final status."""

    type: Literal["wfrun.step_settled"] = "wfrun.step_settled"
    attempt: int = Field(ge=1)
    run_id: str
    status: RunStatus
    exit_code: int | None = None
    signal: int | None = None
    survivors: list[int] = Field(default_factory=list)
    will_retry: bool = False
    # The step has failed for good and takes the workflow run down with it.
    fails_run: bool = False
    # Why the attempt ended, when its run says (a fan-out step's: its fan-out, or no host matching).
    reason: str = ""


class WfRunStepRetryScheduled(WfRunStepEvent):
    """The next attempt is due at `retry_at` (absolute, so a restarted scheduler fires it on time)."""

    type: Literal["wfrun.step_retry_scheduled"] = "wfrun.step_retry_scheduled"
    attempt: int = Field(ge=2)
    retry_at: datetime
    delay_s: float = 0.0


class WfRunStopRequested(WfRunEvent):
    type: Literal["wfrun.stop_requested"] = "wfrun.stop_requested"
    requested_by: str = ""
    reason: str = "requested by user"


class WfRunStepStopIssued(WfRunStepEvent):
    """The running attempt of a step is being stopped (TERM, grace, KILL by its executor)."""

    type: Literal["wfrun.step_stop_issued"] = "wfrun.step_stop_issued"
    attempt: int = Field(ge=1)
    run_id: str
    reason: str = ""


class WfRunStepHeld(WfRunStepEvent):
    """The step asks not to be stopped now (seed 004's `waiting`): a stop waits, at most its `hold_max_s`."""

    type: Literal["wfrun.step_held"] = "wfrun.step_held"
    # The attempt that asked, when the script itself did; an old attempt's hold is ignored.
    attempt: int | None = None
    held_by: str = ""


class WfRunStepReleased(WfRunStepEvent):
    type: Literal["wfrun.step_released"] = "wfrun.step_released"
    attempt: int | None = None
    released_by: str = ""


class WfRunStepSkipped(WfRunStepEvent):
    type: Literal["wfrun.step_skipped"] = "wfrun.step_skipped"
    reason: str = ""


class WfRunStepCancelled(WfRunStepEvent):
    type: Literal["wfrun.step_cancelled"] = "wfrun.step_cancelled"
    reason: str = ""


class WfRunFinished(WfRunEvent):
    type: Literal["wfrun.finished"] = "wfrun.finished"
    status: WorkflowRunStatus
    reason: str = ""


DEFINITION_EVENT_TYPES: tuple[type[Event], ...] = (ProjectDefined, ProjectRemoved, WorkflowDefined, WorkflowRemoved)
WFRUN_EVENT_TYPES: tuple[type[WfRunEvent], ...] = (
    WfRunRequested,
    WfRunStepDispatched,
    WfRunStepSettled,
    WfRunStepRetryScheduled,
    WfRunStopRequested,
    WfRunStepStopIssued,
    WfRunStepHeld,
    WfRunStepReleased,
    WfRunStepSkipped,
    WfRunStepCancelled,
    WfRunFinished,
)
WORKFLOW_EVENT_TYPES: tuple[type[Event], ...] = DEFINITION_EVENT_TYPES + WFRUN_EVENT_TYPES
