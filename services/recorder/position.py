"""The projection's position: the last stream sequence applied to the read models."""

from __future__ import annotations

import asyncpg
from nats.js import JetStreamContext

from scriptbus.events.positions import EVENTS_POSITION, EXECUTORS_POSITION, POSITION_CHANNEL
from scriptbus.events.subjects import Subjects

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


async def store_position(conn: asyncpg.Connection, seq: int, name: str = POSITION_NAME) -> None:
    """Inside the batch's transaction: record `seq` as applied and, for the events stream, tell
    listeners once it commits."""
    if name == POSITION_NAME:
        # One statement, one round trip: a data-modifying WITH runs whether or not it is read.
        await conn.execute(
            """WITH stored AS (UPDATE projection_position SET last_seq = $2 WHERE name = $1)
               SELECT pg_notify($3, $4)""",
            name,
            seq,
            NOTIFY_CHANNEL,
            str(seq),
        )
    else:
        await conn.execute("UPDATE projection_position SET last_seq = $2 WHERE name = $1", name, seq)


async def projection_lag(conn: asyncpg.Connection, js: JetStreamContext, subjects: Subjects) -> int:
    """How many stream sequences the read models are behind: the stream's last seq minus the applied one."""
    info = await js.stream_info(subjects.events_stream)
    return max(0, int(info.state.last_seq) - await read_position(conn))
