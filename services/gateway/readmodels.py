"""SQL against the read models the recorder keeps (`services/recorder/migrations/*.sql`).

The gateway only reads here; every change goes through an event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from scriptbus.events.output import OutputStream
from scriptbus.events.positions import EVENTS_POSITION
from scriptbus.events.statuses import ACTIVE_STATUSES, RunStatus
from scriptbus.gateway.schemas import OUTPUT_TAIL_BYTES, Command, Run, RunSummary

POSITION_NAME = EVENTS_POSITION
# Output is read from PostgreSQL in pages of about this many bytes.
PAGE_BYTES = 1024 * 1024

_SUMMARY_COLUMNS = """
    id::text AS id, status, command_id::text AS command_id, script, args, description, env, secrets, pool,
    target_host,
    timeout_s, stop_grace_s,
    exit_code, signal, host, pid, created_at, started_at, stop_requested_at, finished_at, duration_s,
    output_bytes, output_truncated, dropped_bytes, reason, survivors,
    workflow_run_id::text AS workflow_run_id, workflow_step, attempt, requested_by, stopped_by,
    fanout_id::text AS fanout_id, schedule_id::text AS schedule_id
"""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query on release (a round trip per request): pooled connections only
    run single statements — no SET, LISTEN, advisory lock or prepared cursor; the one LISTEN is on the
    projection watcher's own connection. asyncpg still rolls back an open transaction and drops
    listeners before calling this."""


async def create_pool(database_url: str) -> asyncpg.Pool:
    """A pool that opens connections on demand, so the gateway starts (and says it is not ready)
    while PostgreSQL is still down."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url, min_size=0, max_size=10, init=_init_connection, reset=_keep_session, command_timeout=30
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
        # output_bytes counts what run_output holds (updated with it in the recorder's transaction):
        # a run without output, such as one just requested, needs no second query.
        tail = await _output_tail(conn, run_id) if row["output_bytes"] else ""
    return Run(**_summary(row), output=tail)


async def get_status(pool: asyncpg.Pool, run_id: str) -> RunStatus | None:
    """The run's status, or None when the read model does not know it."""
    status = await pool.fetchval("SELECT status FROM runs WHERE id = $1::uuid", run_id)
    return None if status is None else RunStatus(status)


async def workflow_run_of(pool: asyncpg.Pool, run_id: str) -> str | None:
    """The workflow run the run is a step of, if it is one."""
    wfrun_id = await pool.fetchval("SELECT workflow_run_id::text FROM runs WHERE id = $1::uuid", run_id)
    return None if wfrun_id is None else str(wfrun_id)


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list shows; None means any."""

    status: RunStatus | None = None
    command_id: str | None = None
    # Where it ran, or (not started yet) the host it was asked to run on.
    host: str | None = None
    pool: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    workflow_run: str | None = None
    schedule: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The WHERE clause (or "") and its parameters, numbered from $1."""
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, value: Any) -> None:
            params.append(value)
            clauses.append(sql.replace("$?", f"${len(params)}"))

        if self.status is not None:
            add("status = $?", self.status.value)
        if self.command_id is not None:
            add("command_id = $?::uuid", self.command_id)
        if self.host is not None:
            add("(host = $? OR (host IS NULL AND target_host = $?))", self.host)
        if self.pool is not None:
            add("pool = $?", self.pool)
        if self.created_after is not None:
            add("created_at > $?", self.created_after)
        if self.created_before is not None:
            add("created_at < $?", self.created_before)
        if self.workflow_run is not None:
            add("workflow_run_id = $?::uuid", self.workflow_run)
        if self.schedule is not None:
            add("schedule_id = $?::uuid", self.schedule)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


async def list_runs(
    pool: asyncpg.Pool,
    where: RunFilter,
    limit: int,
    offset: int,
    before: tuple[datetime, str] | None = None,
) -> tuple[list[RunSummary], int, bool]:
    """A page of runs newest first (by created_at, then id), how many match in all, and whether more
    follow the page. `before` starts the page just past that (created_at, id) instead of at `offset`."""
    clause, params = where.where()
    page_clause = clause
    page_params = list(params)
    if before is not None:
        page_params += [before[0], before[1]]
        n = len(page_params)
        keyset = f"(created_at, id) < (${n - 1}::timestamptz, ${n}::uuid)"
        page_clause = f"{clause} AND {keyset}" if clause else f"WHERE {keyset}"
    n = len(page_params)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_SUMMARY_COLUMNS} FROM runs {page_clause} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
            *page_params,
            limit + 1,
            offset,
        )
        total = await conn.fetchval(f"SELECT count(*) FROM runs {clause}", *params)
    return [RunSummary(**_summary(r)) for r in rows[:limit]], int(total), len(rows) > limit


async def _output_tail(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, run_id: str) -> str:
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


async def output_size(pool: asyncpg.Pool, run_id: str, stream: OutputStream | None) -> int:
    """Bytes of output stored for a run: both streams, or only `stream`'s."""
    if stream is None:
        end = await pool.fetchval(
            'SELECT "offset" + length(data) FROM run_output WHERE run_id = $1::uuid ORDER BY "offset" DESC LIMIT 1',
            run_id,
        )
    else:
        end = await pool.fetchval(
            # Stream offsets grow with the combined offset: the primary key's order finds the last one.
            "SELECT stream_offset + length(data) FROM run_output WHERE run_id = $1::uuid AND stream = $2 "
            'ORDER BY "offset" DESC LIMIT 1',
            run_id,
            stream.value,
        )
    return int(end or 0)


@dataclass(frozen=True, slots=True)
class OutputPiece:
    """Bytes of one stream at `start` (of the combined output, or of that stream alone when one was selected)."""

    stream: OutputStream
    start: int
    data: bytes

    @property
    def end(self) -> int:
        return self.start + len(self.data)


async def read_output(
    pool: asyncpg.Pool, run_id: str, start: int, stream: OutputStream | None, page_bytes: int = PAGE_BYTES
) -> AsyncIterator[OutputPiece]:
    """The output stored when called, from byte `start` on, as pieces in order.

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
            'SELECT "offset", stream_offset, stream, data FROM run_output WHERE run_id = $1::uuid '
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
                cut = max(0, pos - at)
                yield OutputPiece(OutputStream(row["stream"]), at + cut, data[cut:])
                pos = at + len(data)
        cursor += page_bytes


_COMMAND_COLUMNS = """
    id::text AS id, name, description, script, env, secrets, timeout_s, stop_grace_s, pool, version, created_at,
    updated_at, files, artifacts
"""


def _as_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


async def get_command(pool: asyncpg.Pool, ref: str) -> Command | None:
    """The command whose id is `ref`, else the one named `ref`; None when there is neither."""
    command_id = _as_uuid(ref)
    async with pool.acquire() as conn:
        row = None
        if command_id is not None:
            row = await conn.fetchrow(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = $1::uuid", command_id)
        if row is None:
            row = await conn.fetchrow(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE name = $1", ref)
    return None if row is None else Command(**dict(row.items()))


async def list_commands(pool: asyncpg.Pool, q: str, limit: int, offset: int) -> tuple[list[Command], int]:
    """Commands ordered by name whose name or description contains `q` (any case), and how many match."""
    # strpos rather than LIKE: `q` may hold % or _ and must match them literally.
    where = "WHERE strpos(lower(name), lower($1)) > 0 OR strpos(lower(description), lower($1)) > 0"
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_COMMAND_COLUMNS} FROM commands {where} ORDER BY name LIMIT $2 OFFSET $3",
            q,
            limit,
            offset,
        )
        total = await conn.fetchval(f"SELECT count(*) FROM commands {where}", q)
    return [Command(**dict(r.items())) for r in rows], int(total)


async def command_id_by_name(pool: asyncpg.Pool, name: str) -> str | None:
    value = await pool.fetchval("SELECT id::text FROM commands WHERE name = $1", name)
    return None if value is None else str(value)


async def executors(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every executor host the fleet has reported, by host, as stored (state not yet aged)."""
    rows = await pool.fetch(
        """SELECT host, executor_id, pools, labels, version, capacity, running, last_heartbeat, started_at,
                  state, now() AS now
           FROM executors ORDER BY host"""
    )
    return [dict(r.items()) for r in rows]


async def run_stats(pool: asyncpg.Pool) -> list[tuple[str, str, float]]:
    """The monotonic counters: (name, label, value)."""
    rows = await pool.fetch("SELECT name, label, value FROM run_stats")
    return [(r["name"], r["label"], float(r["value"])) for r in rows]


async def active_runs(pool: asyncpg.Pool) -> dict[str, int]:
    """How many runs are queued, running and stopping now (every active status present, 0 if none)."""
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM runs WHERE status = ANY($1::text[]) GROUP BY status",
        sorted(s.value for s in ACTIVE_STATUSES),
    )
    counts = {s.value: 0 for s in ACTIVE_STATUSES}
    counts.update({r["status"]: int(r["n"]) for r in rows})
    return counts


async def queue_depth(pool: asyncpg.Pool) -> dict[str, int]:
    """Queued runs per target: the host asked for, else the pool."""
    rows = await pool.fetch(
        "SELECT coalesce(target_host, pool) AS target, count(*) AS n FROM runs WHERE status = 'queued' GROUP BY 1"
    )
    return {r["target"]: int(r["n"]) for r in rows}


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
