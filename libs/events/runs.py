"""Events in the life of one run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scriptbus.events.envelope import Event
from scriptbus.events.files import Artifact
from scriptbus.events.statuses import RunStatus

# The environment variable naming a run's hold file (see `RunRequested.hold_max_s`).
HOLD_FILE_ENV = "SCRIPTBUS_HOLD_FILE"


class RunEvent(Event):
    run_id: str


class RunRequested(RunEvent):
    """A run was asked for. Published on `runs.<id>.requested.<target>`, where executors pull it."""

    type: Literal["run.requested"] = "run.requested"
    script: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    timeout_s: float | None = None
    stop_grace_s: float = 5.0
    pool: str = "default"
    # An exact executor host; when set, the request goes to that host's own queue instead of the pool's.
    host: str | None = None
    command_id: str | None = None
    # Set when the run is one attempt of a workflow step: the workflow run, the step's name, the attempt (1-based).
    workflow_run_id: str | None = None
    workflow_step: str | None = None
    attempt: int | None = None
    # Set when the run is one host's run of a fan-out (`attempt` is then that host's attempt).
    fanout_id: str | None = None
    # Seed 004's `waiting`: while the file named by $SCRIPTBUS_HOLD_FILE exists, a stop waits, at most this
    # long, before its SIGTERM. 0 (the default, every plain run): no hold file is given and stops act at once;
    # workflow steps carry their step's `hold_max_s`. Timeouts and executor shutdowns never wait.
    hold_max_s: float = Field(default=0.0, ge=0)
    # Names of secrets the executor puts in the script's environment; their values are never in an event.
    secrets: list[str] = Field(default_factory=list)
    # The name of the caller who asked (their token's name): the events stream is the audit log.
    requested_by: str = ""
    # Files from the files store placed in the run's folder before it starts, and glob patterns of what
    # to keep from the folder after it ends (uploaded to the artifacts store as `<run_id>/<path>`).
    files: list[str] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list)
    # The schedule whose tick made this run (`scriptbus.events.schedules`).
    schedule_id: str | None = None

    @property
    def target(self) -> str:
        """The queue token executors pull from: the host when one is named, else the pool."""
        return self.host if self.host else self.pool


class RunStarted(RunEvent):
    type: Literal["run.started"] = "run.started"
    host: str
    pid: int
    executor_id: str


class RunStopRequested(RunEvent):
    type: Literal["run.stop_requested"] = "run.stop_requested"
    reason: str = "requested by user"
    stopped_by: str = ""


class RunFinished(RunEvent):
    """The run is over, for whatever reason; the first `finished` of a run wins, later ones are ignored."""

    type: Literal["run.finished"] = "run.finished"
    status: RunStatus
    exit_code: int | None = None
    signal: int | None = None
    host: str | None = None
    duration_s: float | None = None
    # Bytes of output published (stdout + stderr); bytes past the cap are counted in dropped_bytes.
    output_bytes: int = 0
    output_truncated: bool = False
    dropped_bytes: int = 0
    # Pids of the run's processes (its cgroup, or what the executor could find) still alive after SIGKILL.
    survivors: list[int] = Field(default_factory=list)
    reason: str = ""
    # Who cancelled a run that had not started (the gateway's cancel); empty for every other ending.
    stopped_by: str = ""
    # What the run's `artifacts` patterns kept, uploaded before this event.
    artifacts: list[Artifact] = Field(default_factory=list)


class RunDeleted(RunEvent):
    type: Literal["run.deleted"] = "run.deleted"
    deleted_by: str = ""


# After one of these nothing more happens to a run: readers following its messages stop there.
RUN_ENDING_TYPES: frozenset[str] = frozenset({"run.finished", "run.deleted"})
