"""Fan-outs: one script on many hosts. Their events, statuses, and the ids derived from them.

The gateway records the request (with the hosts that matched at that moment), stop and retry requests;
the scheduler records its decisions (`host_dispatched`, `host_skipped`, `finished`) before acting on
them. A host's run id is derived from the fan-out, the host and the attempt, so a decision re-done after
a crash, or taken by two schedulers, names the same run and JetStream drops the duplicate request.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import Field

from scriptbus.events.envelope import Event
from scriptbus.events.statuses import RunStatus

# Fixed forever: changing it would rename every derived id.
_NAMESPACE = uuid.UUID("0d6f7f4e-3b8a-4f55-9a0e-6f1c2f9e8b31")


def fanout_run_id(fanout_id: str, host: str, attempt: int) -> str:
    """The run id of one attempt on one host of a fan-out."""
    return str(uuid.uuid5(_NAMESPACE, f"run/{fanout_id}/{host}/{attempt}"))


def fanout_decision_id(fanout_id: str, kind: str, host: str = "", attempt: int = 0) -> str:
    """The event id of a scheduler decision: the same decision taken twice is one message on the stream."""
    return str(uuid.uuid5(_NAMESPACE, f"decision/{fanout_id}/{kind}/{host}/{attempt}"))


class FanoutStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every host's run succeeded
    FAILED = "failed"  # some host failed, or was skipped after `max_failures`
    STOPPED = "stopped"  # stopped on request


# A host whose latest run ended so counts towards `max_failures`, and is rerun by a retry.
FAILED_RUN_STATUSES: frozenset[RunStatus] = frozenset(
    {RunStatus.FAILED, RunStatus.TERMINATED, RunStatus.KILLED, RunStatus.TIMED_OUT, RunStatus.LOST}
)


class FanoutEvent(Event):
    fanout_id: str


class FanoutRequested(FanoutEvent):
    """A fan-out was asked for. `hosts` are the live executors that matched the filter then, in order;
    `script` is the command's script when `command_id` names one (copied, as for a run)."""

    type: Literal["fanout.requested"] = "fanout.requested"
    script: str
    command_id: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    description: str = ""
    # The filter as asked: pool (None: any), labels every host must have, hosts named.
    pool: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    named_hosts: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(min_length=1)
    max_parallel: int | None = Field(default=None, ge=1)
    max_failures: int | None = Field(default=None, ge=1)
    timeout_s: float | None = None
    stop_grace_s: float = 5.0
    requested_by: str = ""


class FanoutHostDispatched(FanoutEvent):
    """The scheduler starts `attempt` on `host`: run `run_id` (derived) is requested next."""

    type: Literal["fanout.host_dispatched"] = "fanout.host_dispatched"
    host: str
    attempt: int = Field(ge=1)
    run_id: str


class FanoutHostSkipped(FanoutEvent):
    """The host is not started in this round: `max_failures` was reached, or the fan-out was stopped."""

    type: Literal["fanout.host_skipped"] = "fanout.host_skipped"
    host: str
    reason: str = ""


class FanoutStopRequested(FanoutEvent):
    type: Literal["fanout.stop_requested"] = "fanout.stop_requested"
    requested_by: str = ""


class FanoutRetryRequested(FanoutEvent):
    """Run `hosts` again (a new attempt each): those whose run failed or that were never started."""

    type: Literal["fanout.retry_requested"] = "fanout.retry_requested"
    hosts: list[str] = Field(min_length=1)
    requested_by: str = ""


class FanoutFinished(FanoutEvent):
    type: Literal["fanout.finished"] = "fanout.finished"
    status: FanoutStatus
    # Which round ended: a retry starts round 2, and so on (a decision id per round).
    round: int = Field(default=1, ge=1)


FANOUT_EVENT_TYPES: tuple[type[FanoutEvent], ...] = (
    FanoutRequested,
    FanoutHostDispatched,
    FanoutHostSkipped,
    FanoutStopRequested,
    FanoutRetryRequested,
    FanoutFinished,
)
