"""Projections of fan-out events into `fanouts` and `fanout_hosts` (migration 007)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from scriptbus.events.fanouts import (
    FanoutFinished,
    FanoutHostDispatched,
    FanoutHostSkipped,
    FanoutRequested,
    FanoutRetryRequested,
    FanoutStatus,
    FanoutStopRequested,
)
from scriptbus.recorder.values import aware, uuid_or_none


async def fanout_requested(conn: asyncpg.Connection, e: FanoutRequested, seq: int, w: Any) -> None:
    fanout_id = uuid.UUID(e.fanout_id)
    status = await conn.execute(
        """INSERT INTO fanouts (id, seq, status, script, command_id, args, description, pool, labels, named_hosts,
                                max_parallel, max_failures, timeout_s, requested_by, created_at)
           VALUES ($1, $2, 'running', $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12, $13, $14)
           ON CONFLICT (id) DO NOTHING""",
        fanout_id,
        seq,
        e.script,
        uuid_or_none(e.command_id),
        json.dumps(e.args),
        e.description,
        e.pool,
        json.dumps(e.labels),
        json.dumps(e.named_hosts),
        e.max_parallel,
        e.max_failures,
        e.timeout_s,
        e.requested_by,
        aware(e.occurred_at),
    )
    if status == "INSERT 0 1":
        await conn.executemany(
            "INSERT INTO fanout_hosts (fanout_id, host, position) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(fanout_id, host, i) for i, host in enumerate(e.hosts)],
        )


async def fanout_host_dispatched(conn: asyncpg.Connection, e: FanoutHostDispatched, seq: int, w: Any) -> None:
    await conn.execute(
        """UPDATE fanout_hosts SET attempt = $3, run_id = $4, skipped = false, reason = '', run_deleted = false
           WHERE fanout_id = $1 AND host = $2 AND attempt < $3""",
        uuid.UUID(e.fanout_id),
        e.host,
        e.attempt,
        uuid.UUID(e.run_id),
    )


async def fanout_host_skipped(conn: asyncpg.Connection, e: FanoutHostSkipped, seq: int, w: Any) -> None:
    await conn.execute(
        "UPDATE fanout_hosts SET skipped = true, reason = $3 WHERE fanout_id = $1 AND host = $2",
        uuid.UUID(e.fanout_id),
        e.host,
        e.reason,
    )


async def fanout_stop_requested(conn: asyncpg.Connection, e: FanoutStopRequested, seq: int, w: Any) -> None:
    await conn.execute(
        """UPDATE fanouts SET stop_requested_at = COALESCE(stop_requested_at, $2),
                              stopped_by = CASE WHEN stop_requested_at IS NULL THEN $3 ELSE stopped_by END
           WHERE id = $1 AND finished_at IS NULL""",
        uuid.UUID(e.fanout_id),
        aware(e.occurred_at),
        e.requested_by,
    )


async def fanout_retry_requested(conn: asyncpg.Connection, e: FanoutRetryRequested, seq: int, w: Any) -> None:
    fanout_id = uuid.UUID(e.fanout_id)
    await conn.execute(
        """UPDATE fanouts SET status = 'running', round = round + 1, finished_at = NULL,
                              stop_requested_at = NULL, stopped_by = ''
           WHERE id = $1""",
        fanout_id,
    )
    # The hosts to rerun show as waiting until their new attempt is dispatched.
    await conn.execute(
        "UPDATE fanout_hosts SET skipped = false, reason = 'retry' WHERE fanout_id = $1 AND host = ANY($2::text[])",
        fanout_id,
        e.hosts,
    )


async def fanout_finished(conn: asyncpg.Connection, e: FanoutFinished, seq: int, w: Any) -> None:
    await conn.execute(
        "UPDATE fanouts SET status = $2, finished_at = $3 WHERE id = $1 AND round = $4 AND finished_at IS NULL",
        uuid.UUID(e.fanout_id),
        FanoutStatus(e.status).value,
        aware(e.occurred_at),
        e.round,
    )


async def fanout_run_deleted(conn: asyncpg.Connection, run_id: uuid.UUID) -> None:
    """A host's run was deleted: its host shows `deleted` rather than a run that seems not to exist yet."""
    await conn.execute("UPDATE fanout_hosts SET run_deleted = true WHERE run_id = $1", run_id)


FANOUT_PROJECTIONS: dict[str, Callable[[asyncpg.Connection, Any, int, Any], Awaitable[None]]] = {
    "fanout.requested": fanout_requested,
    "fanout.host_dispatched": fanout_host_dispatched,
    "fanout.host_skipped": fanout_host_skipped,
    "fanout.stop_requested": fanout_stop_requested,
    "fanout.retry_requested": fanout_retry_requested,
    "fanout.finished": fanout_finished,
}
