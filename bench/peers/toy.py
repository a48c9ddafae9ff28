"""The "toy" peer of issue 9: what a team would write instead of scriptbus, as small as it honestly gets.

    python bench/peers/toy.py --port 8001 --database-url postgresql://postgres@127.0.0.1:5433/toy

One FastAPI process on uvicorn: `POST /api/v1/runs` inserts a row with asyncpg and starts `bash -c
<script>` with an asyncio subprocess, stores its output as rows and marks the run finished; `GET
/api/v1/runs/{id}` reads the row back; `GET /api/v1/runs?status=` counts runs in a status. The paths
and answers match scriptbus's where the bench reads them, so the same load generator drives both. It
has none of scriptbus's guarantees: no event log, no clean environment, no process-group kill, no run
folder, and a run in flight is lost when the process stops.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
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
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS output (run_id bigint NOT NULL REFERENCES runs, seq integer NOT NULL, data bytea NOT NULL);
"""
CHUNK = 64 * 1024


class RunRequest(BaseModel):
    script: str = Field(min_length=1)


def make_app(database_url: str) -> FastAPI:
    pool: asyncpg.Pool | None = None
    tasks: set[asyncio.Task[None]] = set()  # held so that running tasks are not garbage collected

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

    async def execute(run_id: int, script: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        seq = total = 0
        while chunk := await proc.stdout.read(CHUNK):
            await db().execute("INSERT INTO output (run_id, seq, data) VALUES ($1, $2, $3)", run_id, seq, chunk)
            seq += 1
            total += len(chunk)
        code = await proc.wait()
        await db().execute(
            "UPDATE runs SET status = $2, exit_code = $3, output_bytes = $4, finished_at = now() WHERE id = $1",
            run_id, "succeeded" if code == 0 else "failed", code, total,
        )  # fmt: skip

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/runs", status_code=201)
    async def create_run(body: RunRequest) -> dict[str, Any]:
        row = await db().fetchrow(
            "INSERT INTO runs (script, status) VALUES ($1, 'running') RETURNING id, status", body.script
        )
        assert row is not None
        task = asyncio.create_task(execute(row["id"], body.script))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return {"id": row["id"], "status": row["status"]}

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
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(args.database_url), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
