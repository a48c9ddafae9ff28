"""How fast the recorder projects output chunks, next to a raw COPY of the same bytes.

    python bench/recorder_throughput.py [--chunks 1000] [--chunk-kib 64]

Uses SCRIPTBUS_NATS_URL and SCRIPTBUS_TEST_DATABASE_URL (a superuser URL; defaults to local servers),
makes its own stream prefix and scratch database, and removes both afterwards. Prints chunks/s and MB/s
for: the real recorder process (from its "ready" log line to "caught up", so start-up is excluded),
a raw COPY into a table shaped like run_output, and the recorder's duplicate-tolerant path (COPY into
a temp table, then INSERT ... ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime

import asyncpg
import nats

from scriptbus.events import OutputChunk, OutputStream, RunRequested, Subjects, ensure_streams, publish_event
from scriptbus.recorder.run_output import _copy_skipping_duplicates

_LOG_TIME = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?runs: (ready at|caught up with the stream)", re.MULTILINE
)


def _report(label: str, chunks: int, nbytes: int, seconds: float) -> None:
    print(f"{label:<46} {chunks / seconds:10.0f} chunks/s {nbytes / seconds / 1e6:10.1f} MB/s  ({seconds:.2f}s)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--chunk-kib", type=int, default=64)
    args = parser.parse_args()
    nats_url = os.environ.get("SCRIPTBUS_NATS_URL", "nats://127.0.0.1:4222")
    admin_url = os.environ.get("SCRIPTBUS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    prefix, dbname = "bench" + uuid.uuid4().hex[:8], "bench_" + uuid.uuid4().hex[:8]
    size = args.chunk_kib * 1024
    payloads = [os.urandom(size) for _ in range(args.chunks)]
    total = size * args.chunks

    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    base, _, _ = admin_url.rpartition("/")
    db_url = f"{base}/{dbname}"
    nc = await nats.connect(nats_url)
    js = nc.jetstream(timeout=30)
    s = Subjects(prefix)
    try:
        await ensure_streams(js, s)
        run_id = str(uuid.uuid4())
        await publish_event(js, s, RunRequested(run_id=run_id, script="bench"))
        acks = []
        for i, data in enumerate(payloads):
            chunk = OutputChunk(run_id, OutputStream.STDOUT, i * size, i * size, data)
            acks.append(js.publish(s.run_output(run_id), data, headers=chunk.headers()))
            if len(acks) == 64:
                await asyncio.gather(*acks)
                acks = []
        await asyncio.gather(*acks)

        env = {
            **os.environ,
            "SCRIPTBUS_NATS_URL": nats_url,
            "SCRIPTBUS_DATABASE_URL": db_url,
            "SCRIPTBUS_PREFIX": prefix,
            "SCRIPTBUS_LOG_LEVEL": os.environ.get("SCRIPTBUS_LOG_LEVEL", "INFO"),
        }
        proc = subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
            [sys.executable, "-m", "scriptbus.recorder", "--exit-when-caught-up"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        stamps = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t, _ in _LOG_TIME.findall(proc.stderr)]
        _report(
            "recorder (NATS fetch + projection + COPY)",
            args.chunks,
            total,
            (stamps[-1] - stamps[0]).total_seconds(),
        )

        conn = await asyncpg.connect(db_url)
        try:
            stored = await conn.fetchval("SELECT sum(length(data)) FROM run_output")
            assert stored == total, (stored, total)
            await conn.execute("CREATE TABLE scratch (LIKE run_output INCLUDING ALL)")
            rows = [(uuid.UUID(run_id), i * size, "stdout", i * size, d) for i, d in enumerate(payloads)]
            columns = ["run_id", "offset", "stream", "stream_offset", "data"]
            started = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table("scratch", records=rows, columns=columns)
            _report("raw COPY into a run_output-shaped table", args.chunks, total, time.perf_counter() - started)
            await conn.execute("TRUNCATE scratch")
            # The same, committed in transactions of the recorder's default batch size in bytes.
            per_batch = max(1, (16 * 1024 * 1024) // size)
            started = time.perf_counter()
            for i in range(0, len(rows), per_batch):
                async with conn.transaction():
                    await conn.copy_records_to_table("scratch", records=rows[i : i + per_batch], columns=columns)
            _report("raw COPY, one commit per 16 MiB", args.chunks, total, time.perf_counter() - started)
            await conn.execute("TRUNCATE scratch")
            # The duplicate-tolerant path, timed against the empty scratch table under run_output's name.
            await conn.execute("ALTER TABLE run_output RENAME TO run_output_real")
            await conn.execute("ALTER TABLE scratch RENAME TO run_output")
            started = time.perf_counter()
            async with conn.transaction():
                await _copy_skipping_duplicates(conn, rows)
            _report("COPY to temp table + INSERT ON CONFLICT", args.chunks, total, time.perf_counter() - started)
        finally:
            await conn.close()
    finally:
        try:
            await js.delete_stream(s.events_stream)
            await js.delete_stream(s.executors_stream)
            await js.delete_stream(f"KV_{s.claims_bucket}")
        finally:
            await nc.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
