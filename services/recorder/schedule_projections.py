"""Projections of schedule events into `schedules` and `schedule_fires` (migration 008)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from scriptbus.events.schedules import (
    FiredOutcome,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleUpdated,
)
from scriptbus.recorder.values import aware, strict_uuid


async def schedule_created(conn: asyncpg.Connection, e: ScheduleCreated, seq: int, w: object) -> None:
    # A name made again after a delete is a new generation: its old row and fires are gone with the delete.
    await conn.execute(
        """INSERT INTO schedules (id, name, generation, spec, created_at, created_by, updated_at, updated_by)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6, $5, $6)
           ON CONFLICT (id) DO NOTHING""",
        uuid.UUID(e.schedule_id),
        e.spec.name,
        seq,
        e.spec.model_dump_json(),
        aware(e.occurred_at),
        e.created_by,
    )


async def schedule_updated(conn: asyncpg.Connection, e: ScheduleUpdated, seq: int, w: object) -> None:
    await conn.execute(
        "UPDATE schedules SET spec = $2::jsonb, updated_at = $3, updated_by = $4 WHERE id = $1",
        uuid.UUID(e.schedule_id),
        e.spec.model_dump_json(),
        aware(e.occurred_at),
        e.updated_by,
    )


async def schedule_deleted(conn: asyncpg.Connection, e: ScheduleDeleted, seq: int, w: object) -> None:
    await conn.execute("DELETE FROM schedule_fires WHERE schedule_id = $1", uuid.UUID(e.schedule_id))
    await conn.execute("DELETE FROM schedules WHERE id = $1", uuid.UUID(e.schedule_id))


async def _set_paused(conn: asyncpg.Connection, schedule_id: str, paused: bool, at: datetime, by: str) -> None:
    await conn.execute(
        "UPDATE schedules SET paused = $2, updated_at = $3, updated_by = $4 WHERE id = $1",
        uuid.UUID(schedule_id),
        paused,
        aware(at),
        by,
    )


async def schedule_paused(conn: asyncpg.Connection, e: SchedulePaused, seq: int, w: object) -> None:
    await _set_paused(conn, e.schedule_id, True, e.occurred_at, e.paused_by)


async def schedule_resumed(conn: asyncpg.Connection, e: ScheduleResumed, seq: int, w: object) -> None:
    await _set_paused(conn, e.schedule_id, False, e.occurred_at, e.resumed_by)


async def schedule_fired(conn: asyncpg.Connection, e: ScheduleFired, seq: int, w: object) -> None:
    sched = uuid.UUID(e.schedule_id)
    generation = await conn.fetchval("SELECT generation FROM schedules WHERE id = $1", sched)
    if generation != e.generation:
        return  # a tick of a deleted earlier life of the name
    status = await conn.execute(
        """INSERT INTO schedule_fires (schedule_id, generation, tick, seq, outcome, run_id, wfrun_id, reason,
                                       missed, fired_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING""",
        sched,
        e.generation,
        aware(e.tick),
        seq,
        e.outcome.value,
        strict_uuid(e.run_id),
        strict_uuid(e.wfrun_id),
        e.reason,
        e.missed,
        aware(e.occurred_at),
    )
    if status != "INSERT 0 1":
        return
    skipped = e.outcome is FiredOutcome.SKIPPED
    await conn.execute(
        """UPDATE schedules SET last_tick = GREATEST(last_tick, $2), last_outcome = $3,
               last_run_id = COALESCE($4, last_run_id), fired = fired + $5, skipped = skipped + $6
           WHERE id = $1""",
        sched,
        aware(e.tick),
        e.outcome.value,
        strict_uuid(e.run_id or e.wfrun_id),
        0 if skipped else 1,
        1 if skipped else 0,
    )


async def run_schedule(conn: asyncpg.Connection, run_id: str, schedule_id: str | None, table: str) -> None:
    """Mark a run (`runs`) or workflow run (`workflow_runs`) as made by a schedule."""
    if schedule_id:
        schedule = strict_uuid(schedule_id)
        await conn.execute(f"UPDATE {table} SET schedule_id = $2 WHERE id = $1", uuid.UUID(run_id), schedule)


SCHEDULE_PROJECTIONS: dict[str, Callable[[asyncpg.Connection, Any, int, Any], Awaitable[None]]] = {
    "schedule.created": schedule_created,
    "schedule.updated": schedule_updated,
    "schedule.deleted": schedule_deleted,
    "schedule.paused": schedule_paused,
    "schedule.resumed": schedule_resumed,
    "schedule.fired": schedule_fired,
}
