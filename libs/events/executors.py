"""Events about executors: the agents that run scripts, one per host."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from scriptbus.events.envelope import Event


class ExecutorState(StrEnum):
    """An executor instance's state as the fleet sees it."""

    ONLINE = "online"
    DRAINING = "draining"  # shutting down: finishes its runs, takes no new ones
    STOPPED = "stopped"
    LOST = "lost"


class ExecutorEvent(Event):
    host: str
    # A fresh id each time an executor process starts; a new id for a known host means the old one is gone.
    executor_id: str


class ExecutorHeartbeat(ExecutorEvent):
    type: Literal["executor.heartbeat"] = "executor.heartbeat"
    pools: list[str]
    labels: dict[str, str] = Field(default_factory=dict)
    version: str
    capacity: int
    running: int
    running_run_ids: list[str] = Field(default_factory=list)
    started_at: datetime
    interval_s: float
    draining: bool = False


class ExecutorStopped(ExecutorEvent):
    """The executor shut down cleanly after reporting all its runs."""

    type: Literal["executor.stopped"] = "executor.stopped"


class ExecutorLost(ExecutorEvent):
    """The scheduler saw no heartbeat for longer than the timeout."""

    type: Literal["executor.lost"] = "executor.lost"
    last_seen: datetime
    run_ids: list[str] = Field(default_factory=list)
