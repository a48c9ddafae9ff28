"""The Celery peer of issue 9: the design a Python team reaches for first, Celery + Redis + PostgreSQL.

    python bench/peers/celery_peer.py api --port 8002 --database-url URL --broker redis://127.0.0.1:6390/0
    python bench/peers/celery_peer.py worker --database-url URL --broker redis://127.0.0.1:6390/0 --concurrency 8

`api` is FastAPI on uvicorn: `POST /api/v1/runs` inserts a `queued` row with asyncpg, calls
`run_script.delay(id, script)` and returns the id. `worker` is a Celery prefork worker: each task marks
the run `running`, runs `bash -c <script>` with subprocess, stores the output in 64 KiB rows and the exit
status, with psycopg (one connection per worker process). The read paths answer like scriptbus's where
the bench reads them, so the same load generator drives all systems. `POST /api/v1/runs/cancel-queued`
(bench only) purges the broker's queue and marks the runs still queued `cancelled`, so the bench does
not wait out a backlog of sleeping runs. Like the toy, it has none of scriptbus's guarantees.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import psycopg
import uvicorn
from celery import Celery
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id bigserial PRIMARY KEY,
    script text NOT NULL,
    status text NOT NULL,
    exit_code integer,
    output_bytes bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS output (run_id bigint NOT NULL REFERENCES runs, seq integer NOT NULL, data bytea NOT NULL);
"""
CHUNK = 64 * 1024

# Configured in main() from the command line; the task is registered here, as a Celery project does.
celery_app = Celery("celery_peer")
celery_app.conf.update(
    task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True
)
_connection: dict[str, psycopg.Connection[Any]] = {}


def _db() -> psycopg.Connection[Any]:
    """This worker process's own connection, opened on first use (after the prefork)."""
    if "conn" not in _connection:
        _connection["conn"] = psycopg.connect(celery_app.conf["peer_database_url"], autocommit=True)
    return _connection["conn"]


@celery_app.task(name="run_script")  # type: ignore[untyped-decorator]
def run_script(run_id: int, script: str) -> None:
    conn = _db()
    # A run cancelled while its message sat in this worker's prefetch (which purge cannot reach) never starts.
    started = conn.execute(
        "UPDATE runs SET status = 'running', started_at = now() WHERE id = %s AND status = 'queued' RETURNING id",
        (run_id,),
    ).fetchone()
    if started is None:
        return
    proc = subprocess.Popen(
        ["bash", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    seq = total = 0
    while chunk := proc.stdout.read(CHUNK):
        conn.execute("INSERT INTO output (run_id, seq, data) VALUES (%s, %s, %s)", (run_id, seq, chunk))
        seq += 1
        total += len(chunk)
    code = proc.wait()
    conn.execute(
        "UPDATE runs SET status = %s, exit_code = %s, output_bytes = %s, finished_at = now() WHERE id = %s",
        ("succeeded" if code == 0 else "failed", code, total, run_id),
    )


class RunRequest(BaseModel):
    script: str = Field(min_length=1)


def make_app(database_url: str) -> FastAPI:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(database_url, min_size=4, max_size=20)
        await pool.execute(SCHEMA)
        yield
        await pool.close()

    def db() -> asyncpg.Pool:
        assert pool is not None
        return pool

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/runs", status_code=201)
    async def create_run(body: RunRequest) -> dict[str, Any]:
        row = await db().fetchrow(
            "INSERT INTO runs (script, status) VALUES ($1, 'queued') RETURNING id, status", body.script
        )
        assert row is not None
        run_script.delay(row["id"], body.script)
        return {"id": row["id"], "status": row["status"]}

    @app.post("/api/v1/runs/cancel-queued")
    async def cancel_queued() -> dict[str, int]:
        purged = celery_app.control.purge()
        await db().execute("UPDATE runs SET status = 'cancelled' WHERE status = 'queued'")
        return {"purged": int(purged or 0)}

    @app.get("/api/v1/runs")
    async def count_runs(status: str = Query(), limit: int = Query(default=1)) -> dict[str, int]:
        total = await db().fetchval("SELECT count(*) FROM runs WHERE status = $1", status)
        return {"total": int(total)}

    @app.get("/api/v1/runs/{run_id}")
    async def get_run(run_id: int) -> dict[str, Any]:
        row = await db().fetchrow("SELECT id, status, exit_code, output_bytes FROM runs WHERE id = $1", run_id)
        if row is None:
            raise HTTPException(404, f"no run {run_id}")
        return dict(row)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=["api", "worker"])
    parser.add_argument("--port", type=int, help="the API's port (api)")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--broker", required=True, help="redis://host:port/db")
    parser.add_argument("--concurrency", type=int, default=8, help="prefork worker processes (worker)")
    args = parser.parse_args()
    celery_app.conf.update(broker_url=args.broker, peer_database_url=args.database_url)
    if args.role == "api":
        if args.port is None:
            parser.error("api needs --port")
        uvicorn.run(
            make_app(args.database_url), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
        )
    else:
        celery_app.worker_main(
            ["worker", "--pool=prefork", f"--concurrency={args.concurrency}", "--loglevel=WARNING", "--without-gossip",
             "--without-mingle"]
        )  # fmt: skip


if __name__ == "__main__":
    main()
