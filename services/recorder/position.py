"""The projection's position: the last stream sequence applied to the read models."""

from __future__ import annotations

import asyncpg
from nats.js import JetStreamContext

from scriptbus.events.positions import EVENTS_POSITION, EXECUTORS_POSITION, POSITION_CHANNEL
from scriptbus.events.subjects import Subjects
from scriptbus.recorder.run_stats import ADD_STATS_SQL, RunStats

# The names are a contract with the gateway, so they live in scriptbus.events.positions.
POSITION_NAME = EVENTS_POSITION
EXECUTORS_POSITION_NAME = EXECUTORS_POSITION
NOTIFY_CHANNEL = POSITION_CHANNEL


async def read_position(conn: asyncpg.Connection, name: str = POSITION_NAME) -> int:
    """The last applied stream sequence, 0 when nothing was applied yet."""
    value = await conn.fetchval("SELECT last_seq FROM projection_position WHERE name = $1", name)
    return int(value or 0)


async def lock_position(conn: asyncpg.Connection, name: str = POSITION_NAME) -> int:
    """Inside a transaction: the position, locked until commit so two recorders never apply the same
    messages twice."""
    # One round trip per batch once the row exists (always, after the first batch).
    value = await conn.fetchval("SELECT last_seq FROM projection_position WHERE name = $1 FOR UPDATE", name)
    if value is None:
        await conn.execute(
            "INSERT INTO projection_position (name, last_seq) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", name
        )
        value = await conn.fetchval("SELECT last_seq FROM projection_position WHERE name = $1 FOR UPDATE", name)
    return int(value)


async def store_position(
    conn: asyncpg.Connection,
    seq: int,
    name: str = POSITION_NAME,
    *,
    expected: int | None = None,
    stats: RunStats | None = None,
) -> bool:
    """Inside the batch's transaction: record `seq` as applied, add the batch's counters and, for the
    events stream, tell listeners once it commits. All in one statement: one round trip per batch.

    With `expected` the position moves only from that value (compare-and-set): False means another
    recorder moved it first, and the caller must roll the transaction back."""
    names, labels, values = stats.take() if stats is not None else ([], [], [])
    # Data-modifying WITHs run whether or not they are read.
    sql = f"""WITH counted AS ({ADD_STATS_SQL}),
                   stored AS (INSERT INTO projection_position (name, last_seq) VALUES ($4, $5)
                              ON CONFLICT (name) DO UPDATE SET last_seq = EXCLUDED.last_seq
                              WHERE $6::bigint IS NULL OR projection_position.last_seq = $6
                              RETURNING 1)
              SELECT count(*) FROM stored"""
    args: list[object] = [names, labels, values, name, seq, expected]
    if name == POSITION_NAME:
        sql += ", pg_notify($7, $8)"
        args += [NOTIFY_CHANNEL, str(seq)]
    row = await conn.fetchrow(sql, *args)
    assert row is not None
    return bool(row[0])


async def projection_lag(conn: asyncpg.Connection, js: JetStreamContext, subjects: Subjects) -> int:
    """How many stream sequences the read models are behind: the stream's last seq minus the applied one."""
    info = await js.stream_info(subjects.events_stream)
    return max(0, int(info.state.last_seq) - await read_position(conn))
