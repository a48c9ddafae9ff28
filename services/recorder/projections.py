"""Projections: plain functions from one event to SQL, dispatched by event type.

They run inside the batch's transaction, in stream order; the stream's order is the truth, so a
`run.finished` may be applied in the same batch as its `run.requested`. The same dispatcher serves the
events stream (runs, output, commands) and the executors stream (the fleet).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import ValidationError

from scriptbus.events.codec import decode_event
from scriptbus.events.commands import CommandCreated, CommandDeleted, CommandEvent, CommandUpdated
from scriptbus.events.envelope import Event
from scriptbus.events.executors import ExecutorHeartbeat, ExecutorLost, ExecutorStopped
from scriptbus.events.fanouts import FanoutEvent
from scriptbus.events.output import OutputChunk
from scriptbus.events.runs import (
    RunDeleted,
    RunEvent,
    RunFinished,
    RunRequested,
    RunStarted,
    RunStopRequested,
)
from scriptbus.events.schedules import ScheduleEvent
from scriptbus.events.secrets import SecretRemoved, SecretSet, secret_name_problem
from scriptbus.events.statuses import TERMINAL_STATUSES
from scriptbus.events.tokens import TokenCreated, TokenEvent, TokenRevoked
from scriptbus.events.workflows import WfRunEvent, WorkflowEvent
from scriptbus.recorder.fanout_projections import FANOUT_PROJECTIONS, fanout_run_deleted
from scriptbus.recorder.feed import StreamMessage
from scriptbus.recorder.purges import record_purge
from scriptbus.recorder.run_output import OutputBatch
from scriptbus.recorder.run_requests import RequestBatch
from scriptbus.recorder.run_stats import RunStats
from scriptbus.recorder.schedule_projections import SCHEDULE_PROJECTIONS
from scriptbus.recorder.values import aware, uuid_or_none
from scriptbus.recorder.workflow_projections import STEP_COLUMNS, WORKFLOW_PROJECTIONS, step_run_event

log = logging.getLogger(__name__)

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


@dataclass
class BatchWrites:
    """What the projections of one transaction collect to write in bulk at its end."""

    requests: RequestBatch = field(default_factory=RequestBatch)
    output: OutputBatch = field(default_factory=OutputBatch)
    stats: RunStats = field(default_factory=RunStats)

    async def flush_output(self, conn: asyncpg.Connection) -> None:
        """Write the held runs, then the output collected so far (its rows need their runs')."""
        await self.requests.flush(conn, self.stats)
        stored = await self.output.flush(conn)
        if stored:
            self.stats.count("output_bytes", by=stored)

    async def flush(self, conn: asyncpg.Connection) -> None:
        await self.flush_output(conn)
        await self.stats.flush(conn)


Projection = Callable[[asyncpg.Connection, Any, int, BatchWrites], Awaitable[None]]


# runs ---------------------------------------------------------------------------------------------


async def run_requested(conn: asyncpg.Connection, e: RunRequested, seq: int, w: BatchWrites) -> None:
    # Held, and inserted with the batch's other new runs (run_requests.py).
    w.requests.add(e, seq)


async def run_started(conn: asyncpg.Connection, e: RunStarted, seq: int, w: BatchWrites) -> None:
    # A stop requested before the start was seen leaves the run `stopping`, not `running`.
    row = await conn.fetchrow(
        f"""UPDATE runs SET
               status = CASE WHEN runs.stop_requested_at IS NOT NULL THEN 'stopping' ELSE 'running' END,
               host = $2, pid = $3, executor_id = $4, started_at = $5
           FROM (SELECT id, started_at FROM runs WHERE id = $1 FOR UPDATE) AS before
           WHERE runs.id = before.id AND NOT (runs.status = ANY($6::text[]))
           RETURNING before.started_at IS NULL AS first_start, {STEP_COLUMNS}""",
        uuid.UUID(e.run_id),
        e.host,
        e.pid,
        e.executor_id,
        aware(e.occurred_at),
        _TERMINAL,
    )
    if row is not None and row["first_start"]:
        w.stats.count("started", e.host)
    await step_run_event(conn, e, row)


async def run_stop_requested(conn: asyncpg.Connection, e: RunStopRequested, seq: int, w: BatchWrites) -> None:
    await conn.execute(
        """UPDATE runs SET
               stop_requested_at = COALESCE(stop_requested_at, $2),
               stopped_by = CASE WHEN stop_requested_at IS NULL THEN $3 ELSE stopped_by END,
               status = CASE WHEN status = 'running' THEN 'stopping' ELSE status END
           WHERE id = $1""",
        uuid.UUID(e.run_id),
        aware(e.occurred_at),
        e.stopped_by,
    )


async def run_finished(conn: asyncpg.Connection, e: RunFinished, seq: int, w: BatchWrites) -> None:
    # The first finish wins: a later one (a lost-executor verdict after the real end) changes nothing.
    row = await conn.fetchrow(
        f"""UPDATE runs SET
               status = $2, exit_code = $3, signal = $4, host = COALESCE($5, host), finished_at = $6,
               duration_s = $7, output_truncated = $8, dropped_bytes = $9, survivors = $10::jsonb,
               reason = $11, stopped_by = CASE WHEN $13::text <> '' THEN $13::text ELSE stopped_by END,
               artifacts = $14::jsonb
           WHERE id = $1 AND NOT (status = ANY($12::text[]))
           RETURNING {STEP_COLUMNS}""",
        uuid.UUID(e.run_id),
        e.status.value,
        e.exit_code,
        e.signal,
        e.host,
        aware(e.occurred_at),
        e.duration_s,
        e.output_truncated,
        e.dropped_bytes,
        json.dumps(e.survivors),
        e.reason,
        _TERMINAL,
        e.stopped_by,
        json.dumps([a.model_dump() for a in e.artifacts]),
    )
    if row is not None:
        w.stats.count("finished", e.status.value)
        if e.duration_s is not None:
            w.stats.observe_duration(e.duration_s)
    await step_run_event(conn, e, row)


async def run_deleted(conn: asyncpg.Connection, e: RunDeleted, seq: int, w: BatchWrites) -> None:
    run_id = uuid.UUID(e.run_id)
    await conn.execute("DELETE FROM run_output WHERE run_id = $1", run_id)
    await conn.execute("DELETE FROM runs WHERE id = $1", run_id)
    await fanout_run_deleted(conn, run_id)
    # Deleting forgets: the run's messages leave the stream too, once this transaction commits.
    await record_purge(conn, e.run_id, seq)


# commands -----------------------------------------------------------------------------------------


async def command_created(conn: asyncpg.Connection, e: CommandCreated, seq: int, w: BatchWrites) -> None:
    await conn.execute(
        """INSERT INTO commands (id, name, description, script, env, timeout_s, stop_grace_s, pool,
                                 version, created_at, updated_at, secrets, files, artifacts)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, 1, $9, $9, $10::jsonb, $11::jsonb, $12::jsonb)
           ON CONFLICT (id) DO NOTHING""",
        uuid.UUID(e.command_id),
        e.name,
        e.description,
        e.script,
        json.dumps(e.env),
        e.timeout_s,
        e.stop_grace_s,
        e.pool,
        aware(e.occurred_at),
        json.dumps(e.secrets),
        json.dumps(e.files),
        json.dumps(e.artifacts),
    )


async def command_updated(conn: asyncpg.Connection, e: CommandUpdated, seq: int, w: BatchWrites) -> None:
    await conn.execute(
        """UPDATE commands SET name = $2, description = $3, script = $4, env = $5::jsonb, timeout_s = $6,
                               stop_grace_s = $7, pool = $8, version = version + 1, updated_at = $9,
                               secrets = $10::jsonb, files = $11::jsonb, artifacts = $12::jsonb
           WHERE id = $1""",
        uuid.UUID(e.command_id),
        e.name,
        e.description,
        e.script,
        json.dumps(e.env),
        e.timeout_s,
        e.stop_grace_s,
        e.pool,
        aware(e.occurred_at),
        json.dumps(e.secrets),
        json.dumps(e.files),
        json.dumps(e.artifacts),
    )


async def command_deleted(conn: asyncpg.Connection, e: CommandDeleted, seq: int, w: BatchWrites) -> None:
    await conn.execute("DELETE FROM commands WHERE id = $1", uuid.UUID(e.command_id))


# secrets ------------------------------------------------------------------------------------------


async def secret_set(conn: asyncpg.Connection, e: SecretSet, seq: int, w: BatchWrites) -> None:
    if secret_name_problem(e.name) is not None:
        log.warning("seq %d: secret.set for invalid name %r, skipped", seq, e.name)
        return
    await conn.execute(
        """INSERT INTO secrets (name, created_at, set_at, set_by) VALUES ($1, $2, $2, $3)
           ON CONFLICT (name) DO UPDATE SET set_at = EXCLUDED.set_at, set_by = EXCLUDED.set_by,
                                            version = secrets.version + 1""",
        e.name,
        aware(e.occurred_at),
        e.set_by,
    )


async def secret_removed(conn: asyncpg.Connection, e: SecretRemoved, seq: int, w: BatchWrites) -> None:
    await conn.execute("DELETE FROM secrets WHERE name = $1", e.name)


# tokens -------------------------------------------------------------------------------------------


async def token_created(conn: asyncpg.Connection, e: TokenCreated, seq: int, w: BatchWrites) -> None:
    await conn.execute(
        """INSERT INTO tokens (id, role, name, created_at, created_by) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO NOTHING""",
        uuid.UUID(e.token_id),
        e.role.value,
        e.name,
        aware(e.occurred_at),
        e.created_by,
    )


async def token_revoked(conn: asyncpg.Connection, e: TokenRevoked, seq: int, w: BatchWrites) -> None:
    # The first revocation stands.
    await conn.execute(
        "UPDATE tokens SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND revoked_at IS NULL",
        uuid.UUID(e.token_id),
        aware(e.occurred_at),
        e.revoked_by,
    )


# executors ----------------------------------------------------------------------------------------


async def executor_heartbeat(conn: asyncpg.Connection, e: ExecutorHeartbeat, seq: int, w: BatchWrites) -> None:
    await conn.execute(
        """INSERT INTO executors (host, executor_id, pools, labels, version, capacity, running,
                                  running_run_ids, interval_s, started_at, last_heartbeat, state)
           VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8::jsonb, $9, $10, $11, $12)
           ON CONFLICT (host) DO UPDATE SET
               executor_id = EXCLUDED.executor_id, pools = EXCLUDED.pools, labels = EXCLUDED.labels,
               version = EXCLUDED.version, capacity = EXCLUDED.capacity, running = EXCLUDED.running,
               running_run_ids = EXCLUDED.running_run_ids, interval_s = EXCLUDED.interval_s,
               started_at = EXCLUDED.started_at, last_heartbeat = EXCLUDED.last_heartbeat,
               state = EXCLUDED.state""",
        e.host,
        e.executor_id,
        json.dumps(e.pools),
        json.dumps(e.labels),
        e.version,
        e.capacity,
        e.running,
        json.dumps(e.running_run_ids),
        e.interval_s,
        aware(e.started_at),
        aware(e.occurred_at),
        "draining" if e.draining else "online",
    )


async def executor_stopped(conn: asyncpg.Connection, e: ExecutorStopped, seq: int, w: BatchWrites) -> None:
    # Only the executor process that said so: a newer one on the same host may already be online.
    await conn.execute(
        """UPDATE executors SET state = 'stopped', running = 0, running_run_ids = '[]'
           WHERE host = $1 AND executor_id = $2""",
        e.host,
        e.executor_id,
    )


async def executor_lost(conn: asyncpg.Connection, e: ExecutorLost, seq: int, w: BatchWrites) -> None:
    await conn.execute(
        "UPDATE executors SET state = 'lost' WHERE host = $1 AND executor_id = $2", e.host, e.executor_id
    )


PROJECTIONS: dict[str, Projection] = {
    "run.requested": run_requested,
    "run.started": run_started,
    "run.stop_requested": run_stop_requested,
    "run.finished": run_finished,
    "run.deleted": run_deleted,
    "command.created": command_created,
    "command.updated": command_updated,
    "command.deleted": command_deleted,
    "secret.set": secret_set,
    "secret.removed": secret_removed,
    "token.created": token_created,
    "token.revoked": token_revoked,
    "executor.heartbeat": executor_heartbeat,
    "executor.stopped": executor_stopped,
    "executor.lost": executor_lost,
    **WORKFLOW_PROJECTIONS,
    **FANOUT_PROJECTIONS,
    **SCHEDULE_PROJECTIONS,
}

# Event types the read models deliberately do not show. Every event type is in exactly one of
# PROJECTIONS and IGNORED (tests/unit/test_contract.py), so a new event cannot be dropped by omission.
IGNORED: frozenset[str] = frozenset({"file.stored", "file.deleted"})  # audit only: files list from their store


def output_run_id(subject: str) -> str | None:
    """The run id of an output chunk's subject `<prefix>.runs.<id>.out`; None for any other subject."""
    tokens = subject.split(".")
    if len(tokens) == 4 and tokens[1] == "runs" and tokens[3] == "out":
        return tokens[2]
    return None


@functools.lru_cache(maxsize=1024)
def _valid_uuid(value: str) -> bool:
    # Cached: every output chunk of a run checks the same id.
    return uuid_or_none(value) is not None


def _passes_held_requests(event: Event, held: RequestBatch) -> bool:
    """Whether `event` may be applied before the held requests: another run's start, stop or finish, which
    reads and changes that run's row alone."""
    if isinstance(event, RunRequested):
        return True
    return isinstance(event, RunStarted | RunStopRequested | RunFinished) and event.run_id not in held.run_ids


async def project_message(conn: asyncpg.Connection, msg: StreamMessage, writes: BatchWrites) -> None:
    """Apply one stream message. Output chunks and counters are only collected in `writes`; the
    caller flushes it before the transaction commits.

    Messages that cannot be understood (unknown type, bad JSON, an id that is not a UUID) are
    skipped with a warning: the position moves past them all the same.
    """
    run_id = output_run_id(msg.subject)
    if run_id is not None:
        if not _valid_uuid(run_id):
            log.warning("seq %d: output for run id %r that is not a UUID, dropped", msg.seq, run_id)
            return
        try:
            writes.output.add(OutputChunk.from_message(run_id, msg.data, msg.headers))
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
    entity_id = event.run_id if isinstance(event, RunEvent) else None
    if isinstance(event, CommandEvent):
        entity_id = event.command_id
    if isinstance(event, WfRunEvent):
        entity_id = event.wfrun_id
    if isinstance(event, WorkflowEvent):
        entity_id = event.workflow_id
    if isinstance(event, TokenEvent):
        entity_id = event.token_id
    if isinstance(event, FanoutEvent):
        entity_id = event.fanout_id
    if isinstance(event, ScheduleEvent):
        entity_id = event.schedule_id
    if entity_id is not None and not _valid_uuid(entity_id):
        log.warning("seq %d: %s for id %r that is not a UUID, skipped", msg.seq, event.type, entity_id)
        return
    if writes.requests.held and not _passes_held_requests(event, writes.requests):
        await writes.requests.flush(conn, writes.stats)
    if isinstance(event, RunRequested | RunDeleted) and event.run_id in writes.output.run_ids:
        # Chunks collected so far must meet the run as it is at their place in the stream, whatever
        # the batch boundaries: a rebuild then stores (and counts) exactly what the live run did.
        await writes.flush_output(conn)
    await projection(conn, event, msg.seq, writes)
