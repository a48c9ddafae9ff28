"""What the schedule routes take and answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from scriptbus.events.schedules import CatchUp, Overlap, ScheduleSpec, WorkflowTarget

# How many coming fire times `GET /schedules/{id}` shows.
NEXT_TICKS = 5


class SchedulePatch(BaseModel):
    """`PATCH`: only the fields given change (the name never does: it is the schedule's identity). Give
    `cron` or `every_s` (the other is dropped), `command_id` or `workflow` (likewise)."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(None, max_length=256)
    every_s: int | None = Field(None, ge=1, le=366 * 86400)
    timezone: str | None = Field(None, max_length=64)
    command_id: str | None = Field(None, max_length=128)
    workflow: WorkflowTarget | None = None
    args: list[str] | None = Field(None, max_length=1000)
    env: dict[str, str] | None = None
    secrets: list[str] | None = Field(None, max_length=100)
    overlap: Overlap | None = None
    catch_up: CatchUp | None = None


class ScheduleFire(BaseModel):
    tick: datetime
    outcome: str = Field(description="`started`, `queued` (waits for the previous run) or `skipped`.")
    run_id: str | None
    wfrun_id: str | None
    reason: str
    missed: int = Field(description="Older ticks passed over (missed while no scheduler ran) before this one.")
    fired_at: datetime


class Schedule(ScheduleSpec):
    model_config = ConfigDict(extra="ignore")

    id: str
    paused: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    last_tick: datetime | None
    last_outcome: str | None
    last_run_id: str | None
    command_name: str | None = Field(None, description="The saved command's current name (None once it is deleted).")
    fired: int = Field(description="Ticks that started or queued a run.")
    skipped: int = Field(description="Ticks that made no run (`recent` says why).")
    next_ticks: list[datetime] = Field(description=f"The next {NEXT_TICKS} fire times (none while paused).")
    recent: list[ScheduleFire] = Field(default_factory=list, description="The latest ticks, newest first.")


class ScheduleList(BaseModel):
    items: list[Schedule]
    total: int
