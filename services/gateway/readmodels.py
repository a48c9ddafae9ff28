"""SQL against the read models the recorder keeps (`services/recorder/migrations/001_runs.sql`).

The gateway only reads here; every change goes through an event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from scriptbus.events.output import OutputStream
from scriptbus.events.statuses import RunStatus
from scriptbus.gateway.schemas import OUTPUT_TAIL_BYTES, Run, RunSummary

POSITION_NAME = "runs"
POSITION_CHANNEL = "scriptbus_position"
# Output is read from PostgreSQL in pages of about this many bytes.
PAGE_BYTES = 1024 * 1024

_SUMMARY_COLUMNS = """
    id::text AS id, status, script, args, description, env, pool, target_host, timeout_s, stop_grace_s,
    exit_code, signal, host, pid, created_at, started_at, stop_requested_at, finished_at, duration_s,
    output_bytes, output_truncated, dropped_bytes, reason, survivors
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(database_url: str) -> asyncpg.Pool:
    """A pool that opens connections on demand, so the gateway starts (and says it is not ready)
    while PostgreSQL is still down."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url, min_size=0, max_size=10, init=_init_connection, command_timeout=30
    )
    return pool


def _summary(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row.items())


async def get_run(pool: asyncpg.Pool, run_id: str) -> Run | None:
    """One run with the last 64 KiB of its output, or None when the read model does not know it."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE id = $1::uuid", run_id)
        if row is None:
            return None
        tail = await _output_tail(conn, run_id)
    return Run(**_summary(row), output=tail)


async def get_status(pool: asyncpg.Pool, run_id: str) -> RunStatus | None:
    """The run's status, or None when the read model does not know it."""
    status = await pool.fetchval("SELECT status FROM runs WHERE id = $1::uuid", run_id)
    return None if status is None else RunStatus(status)


async def list_runs(
    pool: asyncpg.Pool, status: RunStatus | None, limit: int, offset: int
) -> tuple[list[RunSummary], int]:
    """A page of runs, newest first, and how many match in all."""
    where, params = ("WHERE status = $1", [status.value]) if status else ("", [])
    n = len(params)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_SUMMARY_COLUMNS} FROM runs {where} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
            *params,
            limit,
            offset,
        )
        total = await conn.fetchval(f"SELECT count(*) FROM runs {where}", *params)
    return [RunSummary(**_summary(r)) for r in rows], int(total)


async def _output_tail(conn: asyncpg.Connection, run_id: str) -> str:
    # Start at the chunk holding the first byte of the tail; the primary key (run_id, offset) makes
    # each sub-select one index probe.
    rows = await conn.fetch(
        """
        WITH last AS (
            SELECT "offset" + length(data) AS end_ FROM run_output
            WHERE run_id = $1::uuid ORDER BY "offset" DESC LIMIT 1
        )
        SELECT data FROM run_output
        WHERE run_id = $1::uuid AND "offset" >= coalesce((
            SELECT max("offset") FROM run_output
            WHERE run_id = $1::uuid AND "offset" <= (SELECT end_ FROM last) - $2
        ), 0)
        ORDER BY "offset"
        """,
        run_id,
        OUTPUT_TAIL_BYTES,
    )
    data = b"".join(r["data"] for r in rows)[-OUTPUT_TAIL_BYTES:]
    if len(data) == OUTPUT_TAIL_BYTES:
        # The cut may land inside a UTF-8 character; drop its continuation bytes rather than show U+FFFD.
        skip = 0
        while skip < 3 and skip < len(data) and 0x80 <= data[skip] <= 0xBF:
            skip += 1
        data = data[skip:]
    return data.decode("utf-8", errors="replace")


async def read_output(
    pool: asyncpg.Pool, run_id: str, start: int, stream: OutputStream | None, page_bytes: int = PAGE_BYTES
) -> AsyncIterator[tuple[int, bytes]]:
    """The output stored when called, from byte `start` on, as (end position, bytes) pieces in order.

    Positions count the combined output, or only `stream`'s bytes when it is given. Pages are ranges
    of the combined offset (the primary key's order), so each query is an index range scan and holds
    at most `page_bytes` plus one chunk, however small or large the chunks are."""
    selected = None if stream is None else stream.value
    if selected is None:
        first = await pool.fetchval(
            'SELECT max("offset") FROM run_output WHERE run_id = $1::uuid AND "offset" <= $2', run_id, start
        )
    else:
        first = await pool.fetchval(
            'SELECT "offset" FROM run_output WHERE run_id = $1::uuid AND stream = $2 AND stream_offset <= $3 '
            "ORDER BY stream_offset DESC LIMIT 1",
            run_id,
            selected,
            start,
        )
    end = await pool.fetchval(
        'SELECT "offset" + length(data) FROM run_output WHERE run_id = $1::uuid ORDER BY "offset" DESC LIMIT 1',
        run_id,
    )
    cursor: int = first or 0
    pos = start
    while end is not None and cursor < end:
        rows = await pool.fetch(
            'SELECT "offset", stream_offset, data FROM run_output WHERE run_id = $1::uuid '
            'AND "offset" >= $2 AND "offset" < $3 AND ($4::text IS NULL OR stream = $4) ORDER BY "offset"',
            run_id,
            cursor,
            cursor + page_bytes,
            selected,
        )
        for row in rows:
            at: int = row["offset"] if selected is None else row["stream_offset"]
            data: bytes = row["data"]
            if at + len(data) > pos:
                yield at + len(data), data[max(0, pos - at) :]
                pos = at + len(data)
        cursor += page_bytes


async def projection_position(pool: asyncpg.Pool) -> int:
    """The last events-stream sequence the recorder has applied; 0 before its first commit."""
    try:
        seq = await pool.fetchval("SELECT last_seq FROM projection_position WHERE name = $1", POSITION_NAME)
    except asyncpg.UndefinedTableError:
        return 0
    return int(seq or 0)


async def check_ready(pool: asyncpg.Pool) -> None:
    """Raise unless PostgreSQL answers and the recorder has created the runs table."""
    async with pool.acquire(timeout=3) as conn:
        await conn.fetchval("SELECT 1")
        if await conn.fetchval("SELECT to_regclass('runs')::text") is None:
            raise LookupError("table runs does not exist yet (is the recorder running?)")
