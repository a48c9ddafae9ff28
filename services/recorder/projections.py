"""Projections: plain functions from one event to SQL, dispatched by event type.

They run inside the batch's transaction, in stream order; the stream's order is the truth, so a
`run.finished` may be applied in the same batch as its `run.requested`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from scriptbus.events.codec import decode_event
from scriptbus.events.envelope import Event
from scriptbus.events.output import OutputChunk
from scriptbus.events.runs import (
    RunDeleted,
    RunEvent,
    RunFinished,
    RunRequested,
    RunStarted,
    RunStopRequested,
)
from scriptbus.events.statuses import TERMINAL_STATUSES
from scriptbus.recorder.feed import StreamMessage
from scriptbus.recorder.run_output import OutputBatch

log = logging.getLogger(__name__)

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)

Projection = Callable[[asyncpg.Connection, Any, int], Awaitable[None]]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def run_requested(conn: asyncpg.Connection, e: RunRequested, seq: int) -> None:
    await conn.execute(
        """INSERT INTO runs (id, seq, status, script, args, env, description, pool, target_host,
                             command_id, timeout_s, stop_grace_s, created_at)
           VALUES ($1, $2, 'queued', $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (id) DO NOTHING""",
        uuid.UUID(e.run_id),
        seq,
        e.script,
        json.dumps(e.args),
        json.dumps(e.env),
        e.description,
        e.pool,
        e.host,
        _uuid_or_none(e.command_id),
        e.timeout_s,
        e.stop_grace_s,
        _aware(e.occurred_at),
    )


async def run_started(conn: asyncpg.Connection, e: RunStarted, seq: int) -> None:
    # A stop requested before the start was seen leaves the run `stopping`, not `running`.
    await conn.execute(
        """UPDATE runs SET
               status = CASE WHEN status = ANY($6::text[]) THEN status
                             WHEN stop_requested_at IS NOT NULL THEN 'stopping'
                             ELSE 'running' END,
               host = $2, pid = $3, executor_id = $4, started_at = $5
           WHERE id = $1 AND NOT (status = ANY($6::text[]))""",
        uuid.UUID(e.run_id),
        e.host,
        e.pid,
        e.executor_id,
        _aware(e.occurred_at),
        _TERMINAL,
    )


async def run_stop_requested(conn: asyncpg.Connection, e: RunStopRequested, seq: int) -> None:
    await conn.execute(
        """UPDATE runs SET
               stop_requested_at = COALESCE(stop_requested_at, $2),
               status = CASE WHEN status = 'running' THEN 'stopping' ELSE status END
           WHERE id = $1""",
        uuid.UUID(e.run_id),
        _aware(e.occurred_at),
    )


async def run_finished(conn: asyncpg.Connection, e: RunFinished, seq: int) -> None:
    # The first finish wins: a later one (a lost-executor verdict after the real end) changes nothing.
    await conn.execute(
        """UPDATE runs SET
               status = $2, exit_code = $3, signal = $4, host = COALESCE($5, host), finished_at = $6,
               duration_s = $7, output_truncated = $8, dropped_bytes = $9, survivors = $10::jsonb,
               reason = $11
           WHERE id = $1 AND NOT (status = ANY($12::text[]))""",
        uuid.UUID(e.run_id),
        e.status.value,
        e.exit_code,
        e.signal,
        e.host,
        _aware(e.occurred_at),
        e.duration_s,
        e.output_truncated,
        e.dropped_bytes,
        json.dumps(e.survivors),
        e.reason,
        _TERMINAL,
    )


async def run_deleted(conn: asyncpg.Connection, e: RunDeleted, seq: int) -> None:
    run_id = uuid.UUID(e.run_id)
    await conn.execute("DELETE FROM run_output WHERE run_id = $1", run_id)
    await conn.execute("DELETE FROM runs WHERE id = $1", run_id)


PROJECTIONS: dict[str, Projection] = {
    "run.requested": run_requested,
    "run.started": run_started,
    "run.stop_requested": run_stop_requested,
    "run.finished": run_finished,
    "run.deleted": run_deleted,
}


def output_run_id(subject: str) -> str | None:
    """The run id of an output chunk's subject `<prefix>.runs.<id>.out`; None for any other subject."""
    tokens = subject.split(".")
    if len(tokens) == 4 and tokens[1] == "runs" and tokens[3] == "out":
        return tokens[2]
    return None


def _valid_uuid(value: str) -> bool:
    return _uuid_or_none(value) is not None


async def project_message(conn: asyncpg.Connection, msg: StreamMessage, output: OutputBatch) -> None:
    """Apply one stream message. Output chunks are only collected in `output`; the caller flushes it.

    Messages that cannot be understood (unknown type, bad JSON, a run id that is not a UUID) are
    skipped with a warning: the position moves past them all the same.
    """
    run_id = output_run_id(msg.subject)
    if run_id is not None:
        if not _valid_uuid(run_id):
            log.warning("seq %d: output for run id %r that is not a UUID, dropped", msg.seq, run_id)
            return
        try:
            output.add(OutputChunk.from_message(run_id, msg.data, msg.headers))
        except ValueError as exc:
            log.warning("seq %d: bad output chunk headers (%s), dropped", msg.seq, exc)
        return
    try:
        event: Event | None = decode_event(msg.data)
    except (ValueError, ValidationError) as exc:
        log.warning("seq %d on %s: undecodable event, skipped: %s", msg.seq, msg.subject, exc)
        return
    if event is None:
        return
    projection = PROJECTIONS.get(event.type)
    if projection is None:
        return
    if isinstance(event, RunEvent):
        if not _valid_uuid(event.run_id):
            log.warning(
                "seq %d: %s for run id %r that is not a UUID, skipped", msg.seq, event.type, event.run_id
            )
            return
        # Chunks collected so far must meet the run as it is at their place in the stream.
        if event.run_id in output.run_ids:
            if isinstance(event, RunDeleted):
                output.discard_run(event.run_id)
            elif isinstance(event, RunRequested):
                await output.flush(conn)
    await projection(conn, event, msg.seq)
