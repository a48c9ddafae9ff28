"""Reading fan-outs from PostgreSQL: `fanouts`, `fanout_hosts`, and each host's latest run."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import asyncpg

from scriptbus.events.fanouts import FanoutStatus
from scriptbus.gateway.fanout_schemas import Fanout, FanoutHostRun

_FANOUT_COLUMNS = """id::text, status, script, command_id::text, args, description, pool, labels, max_parallel,
    max_failures, timeout_s, requested_by, round, created_at, stop_requested_at, finished_at"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _host_run(row: asyncpg.Record) -> FanoutHostRun:
    if row["skipped"]:
        status = "skipped"
    elif row["run_id"] is None or row["reason"] == "retry":
        status = "pending"
    elif row["run_deleted"]:
        status = "deleted"
    elif row["run_status"] is None:
        # Dispatched: its request is not projected yet.
        status = "queued"
    else:
        status = row["run_status"]
    # A host waiting for its retry shows none of the failed run's details.
    fresh = row["reason"] != "retry"
    return FanoutHostRun(
        host=row["host"],
        status=status,
        attempt=row["attempt"],
        run_id=row["run_id"],
        exit_code=row["exit_code"] if fresh else None,
        signal=row["signal"] if fresh else None,
        started_at=row["started_at"] if fresh else None,
        finished_at=row["finished_at"] if fresh else None,
        duration_s=row["duration_s"] if fresh else None,
        reason=row["reason"] if row["reason"] != "retry" else "waiting to be retried",
    )


async def host_runs(conn: asyncpg.Pool | asyncpg.Connection, ids: list[str]) -> dict[str, list[FanoutHostRun]]:
    """Each fan-out's hosts and their latest runs, in start order."""
    rows = await conn.fetch(
        """SELECT h.fanout_id::text AS fanout_id, h.host, h.attempt, h.run_id::text AS run_id, h.skipped, h.reason,
                  h.run_deleted, r.status AS run_status, r.exit_code, r.signal, r.started_at, r.finished_at,
                  r.duration_s
           FROM fanout_hosts h LEFT JOIN runs r ON r.id = h.run_id
           WHERE h.fanout_id = ANY($1::uuid[]) ORDER BY h.fanout_id, h.position""",
        ids,
    )
    out: dict[str, list[FanoutHostRun]] = {}
    for row in rows:
        out.setdefault(row["fanout_id"], []).append(_host_run(row))
    return out


def _fanout(row: asyncpg.Record, runs: list[FanoutHostRun]) -> Fanout:
    return Fanout(
        id=row["id"],
        status=FanoutStatus(row["status"]),
        script=row["script"],
        command_id=row["command_id"],
        args=_json(row["args"]),
        description=row["description"],
        pool=row["pool"],
        labels=_json(row["labels"]),
        max_parallel=row["max_parallel"],
        max_failures=row["max_failures"],
        timeout_s=row["timeout_s"],
        requested_by=row["requested_by"],
        round=row["round"],
        created_at=row["created_at"],
        stop_requested_at=row["stop_requested_at"],
        finished_at=row["finished_at"],
        hosts=[r.host for r in runs],
        runs=runs,
        counts=dict(Counter(r.status for r in runs)),
    )


async def get_fanout(pool: asyncpg.Pool, fanout_id: str) -> Fanout | None:
    row = await pool.fetchrow(f"SELECT {_FANOUT_COLUMNS} FROM fanouts WHERE id = $1::uuid", fanout_id)
    if row is None:
        return None
    return _fanout(row, (await host_runs(pool, [fanout_id])).get(fanout_id, []))


async def list_fanouts(
    pool: asyncpg.Pool, status: FanoutStatus | None, limit: int, before: tuple[datetime, str] | None
) -> tuple[list[Fanout], int, bool]:
    """A page of fan-outs newest first, the total matching, and whether more pages follow."""
    where = ["($1::text IS NULL OR status = $1)"]
    params: list[Any] = [status.value if status is not None else None]
    total = await pool.fetchval(f"SELECT count(*) FROM fanouts WHERE {where[0]}", *params)
    if before is not None:
        params.extend(before)
        where.append("(created_at, id) < ($2, $3::uuid)")
    params.append(limit + 1)
    rows = await pool.fetch(
        f"""SELECT {_FANOUT_COLUMNS} FROM fanouts WHERE {" AND ".join(where)}
            ORDER BY created_at DESC, id DESC LIMIT ${len(params)}""",
        *params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    hosts = await host_runs(pool, [r["id"] for r in rows])
    return [_fanout(r, hosts.get(r["id"], [])) for r in rows], int(total), more


async def unfinished_fanout_of(pool: asyncpg.Pool, run_id: str) -> str | None:
    """The fan-out a run belongs to, while that fan-out has not finished."""
    fanout_id: str | None = await pool.fetchval(
        """SELECT f.id::text FROM runs r JOIN fanouts f ON f.id = r.fanout_id
           WHERE r.id = $1::uuid AND f.finished_at IS NULL""",
        run_id,
    )
    return fanout_id
