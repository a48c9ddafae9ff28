"""SQL against the schedule read models (migration 008)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from scriptbus.events.schedules import ScheduleSpec
from scriptbus.gateway.schedule_schemas import NEXT_TICKS, Schedule, ScheduleFire

_COLUMNS = """id::text AS id, spec, paused, created_at, created_by, updated_at, updated_by, last_tick,
    last_outcome, last_run_id::text AS last_run_id, fired, skipped,
    (SELECT c.name FROM commands c WHERE c.id::text = schedules.spec->>'command_id') AS command_name"""
RECENT = 10


def _schedule(row: asyncpg.Record, recent: list[ScheduleFire]) -> Schedule:
    spec = ScheduleSpec.model_validate(row["spec"])
    after = datetime.now(UTC) if row["last_tick"] is None else max(datetime.now(UTC), row["last_tick"])
    fields = {k: row[k] for k in row.keys() if k != "spec"}
    return Schedule(
        **spec.model_dump(),
        **fields,
        next_ticks=[] if row["paused"] else spec.ticks_after(after, NEXT_TICKS),
        recent=recent,
    )


async def get_schedule(pool: asyncpg.Pool, ref: str) -> Schedule | None:
    """By id or by name."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM schedules WHERE id::text = $1 OR name = $1", ref)
        if row is None:
            return None
        fires = await conn.fetch(
            """SELECT tick, outcome, run_id::text AS run_id, wfrun_id::text AS wfrun_id, reason, missed, fired_at
               FROM schedule_fires WHERE schedule_id = $1::uuid ORDER BY tick DESC LIMIT $2""",
            row["id"],
            RECENT,
        )
    return _schedule(row, [ScheduleFire(**dict(f.items())) for f in fires])


async def list_schedules(pool: asyncpg.Pool, limit: int, offset: int) -> tuple[list[Schedule], int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM schedules ORDER BY name LIMIT $1 OFFSET $2", limit, offset)
        total = await conn.fetchval("SELECT count(*) FROM schedules")
    return [_schedule(r, []) for r in rows], int(total or 0)
