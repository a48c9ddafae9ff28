"""Schedules: their definition, their events, their ticks, and the ids derived from a tick.

A schedule's id is derived from its name, so `schedule.created` appended with an expected last sequence
on `schedules.<id>.>` is the one atomic "the name is free" (no bucket, no read model). Each (re)creation
is a new *generation*, the stream sequence of its `created`: ids derived from a tick include it, so a
schedule deleted and made again never names a run of its earlier life.

Cron expressions are evaluated by `cronsim` (healthchecks.io's cron engine: typed, no dependencies,
Debian cron's DST rules: a time skipped by a spring-forward fires once right after the gap, a time
repeated by a fall-back fires once); zones come from `zoneinfo` (with `tzdata` where the system has none).
"""

from __future__ import annotations

import itertools
import uuid
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scriptbus.events.envelope import Event

# Fixed forever: changing it would rename every derived id.
_NAMESPACE = uuid.UUID("8d3f6a52-1c7e-4b0a-9e61-3a2d5c7b9f14")
# A tick this much behind the clock is "missed" (no scheduler was there to fire it): `catch_up` decides.
DEFAULT_LATE_AFTER_S = 30.0
SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class Overlap(StrEnum):
    SKIP = "skip"  # the previous run still runs: this tick makes no run
    ALLOW = "allow"  # start anyway
    QUEUE = "queue"  # start when the previous one ends; at most one waits


class CatchUp(StrEnum):
    NONE = "none"  # ticks missed while no scheduler ran are skipped
    LAST = "last"  # the most recent missed tick runs once


class WorkflowTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    project: str = Field(min_length=1, max_length=128)
    workflow: str = Field(min_length=1, max_length=128)


def schedule_id(name: str) -> str:
    """The aggregate id of a schedule: one per name."""
    return str(uuid.uuid5(_NAMESPACE, f"schedule/{name}"))


def tick_key(tick: datetime) -> str:
    return tick.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


def tick_run_id(sched_id: str, generation: int, tick: datetime) -> str:
    """The run (or workflow run) a tick makes: every scheduler, before or after a crash, names the same one."""
    return str(uuid.uuid5(_NAMESPACE, f"run/{sched_id}/{generation}/{tick_key(tick)}"))


def fired_event_id(sched_id: str, generation: int, tick: datetime) -> str:
    """The `schedule.fired` event id of a tick: a second publish of it is dropped as a duplicate."""
    return str(uuid.uuid5(_NAMESPACE, f"fired/{sched_id}/{generation}/{tick_key(tick)}"))


def request_event_id(run_id: str) -> str:
    """The request event of a scheduled run, the same however often it is re-published."""
    return str(uuid.uuid5(_NAMESPACE, f"request/{run_id}"))


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone called `name`; ValueError naming it when there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from exc


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a five-field cron expression, or None when it is."""
    if len(expr.split()) != 5:
        return f"cron {expr!r} must have five fields: minute hour day-of-month month day-of-week"
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        return f"cron {expr!r} is not valid: {exc}"
    return None


class ScheduleSpec(BaseModel):
    """What a schedule runs and when. Exactly one of `cron` and `every_s`; one of `command_id` and `workflow`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=SCHEDULE_NAME_PATTERN)
    cron: str | None = Field(default=None, max_length=256)
    every_s: int | None = Field(default=None, ge=1, le=366 * 86400)
    timezone: str = Field(default="UTC", max_length=64)
    command_id: str | None = Field(default=None, max_length=128)
    workflow: WorkflowTarget | None = None
    args: list[str] = Field(default_factory=list, max_length=1000)
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, max_length=100)
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.LAST

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and (problem := cron_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("give exactly one of cron and every_s")
        if (self.command_id is None) == (self.workflow is None):
            raise ValueError("give exactly one of command_id and workflow")
        return self

    def ticks_after(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times strictly after `after`, in the schedule's zone."""
        return list(itertools.islice(self.iter_ticks(after), count))

    def iter_ticks(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after `after`, lazily (a cron schedule's are computed one by one)."""
        tz = zone(self.timezone)
        if self.every_s is not None:
            # Ticks are whole multiples of every_s since the Unix epoch: every scheduler agrees on them.
            k = int(after.timestamp()) // self.every_s + 1
            while True:
                yield datetime.fromtimestamp(k * self.every_s, tz)
                k += 1
        assert self.cron is not None
        yield from CronSim(self.cron, after.astimezone(tz))

    def due_ticks(self, after: datetime, now: datetime, limit: int = 1000) -> list[datetime]:
        """Ticks in (after, now], oldest first; at most the `limit` most recent."""
        if self.every_s is not None:
            step = self.every_s
            lo = int(after.timestamp()) // step + 1
            hi = int(now.timestamp()) // step
            tz = zone(self.timezone)
            return [datetime.fromtimestamp(k * step, tz) for k in range(max(lo, hi - limit + 1), hi + 1)]
        due: list[datetime] = []
        # Start no further back than needed: a schedule idle for years must not walk every minute.
        for tick in self.iter_ticks(max(after, now - timedelta(days=1))):
            if tick > now:
                break
            due.append(tick)
        return due[-limit:]


# events --------------------------------------------------------------------------------------------


class ScheduleEvent(Event):
    schedule_id: str


class ScheduleCreated(ScheduleEvent):
    type: Literal["schedule.created"] = "schedule.created"
    spec: ScheduleSpec
    created_by: str = ""


class ScheduleUpdated(ScheduleEvent):
    """The whole new definition (the name stays: it is the schedule's identity)."""

    type: Literal["schedule.updated"] = "schedule.updated"
    spec: ScheduleSpec
    updated_by: str = ""


class ScheduleDeleted(ScheduleEvent):
    type: Literal["schedule.deleted"] = "schedule.deleted"
    deleted_by: str = ""


class SchedulePaused(ScheduleEvent):
    type: Literal["schedule.paused"] = "schedule.paused"
    paused_by: str = ""


class ScheduleResumed(ScheduleEvent):
    type: Literal["schedule.resumed"] = "schedule.resumed"
    resumed_by: str = ""


class FiredOutcome(StrEnum):
    STARTED = "started"  # the run (or workflow run) was requested
    QUEUED = "queued"  # it starts when the previous one ends
    SKIPPED = "skipped"  # no run: `reason` says why


class ScheduleFired(ScheduleEvent):
    """The scheduler's decision about one tick, stored before its run is requested; one per tick."""

    type: Literal["schedule.fired"] = "schedule.fired"
    generation: int
    tick: datetime
    outcome: FiredOutcome
    run_id: str | None = None
    wfrun_id: str | None = None
    reason: str = ""
    # Older ticks passed over (missed while no scheduler ran) on the way to this one.
    missed: int = 0


SCHEDULE_EVENT_TYPES: tuple[type[ScheduleEvent], ...] = (
    ScheduleCreated,
    ScheduleUpdated,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
    ScheduleFired,
)
