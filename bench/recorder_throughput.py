"""How fast the recorder stores output, and how soon it projects a lone event, next to raw COPY.

    python bench/recorder_throughput.py [--total-mib 50] [--chunk-kib 20] [--line-bytes 100] [--lone 300]
                                        [--baseline DIR --rounds 3]

Throughput: `--total-mib` of `--line-bytes` lines, published as output chunks of about `--chunk-kib`
(what the executor sends for a script printing short lines), applied by the real recorder process
(from its "ready" log line to "caught up", so start-up is excluded). Printed next to raw COPY of the
same bytes into a run_output-shaped table and `bench/limits.copy_rate` (64 KiB rows), measured in the
same run, as ratios.

Latency: `--lone` events published one at a time on an idle stream (a `run.requested`, then a short
output chunk and a `run.finished`, like a single run), each timed from its publish ack to the
recorder's NOTIFY of a position that covers it: what the gateway waits for before answering a POST.

This machine is shared and noisy: compare versions with --baseline, which alternates them in one run.

Uses SCRIPTBUS_NATS_URL and SCRIPTBUS_TEST_DATABASE_URL (a superuser URL) when set; otherwise starts
its own nats-server and PostgreSQL from the wheels on free ports and stops them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from limits import copy_rate  # noqa: E402

from scriptbus.embedded import EmbeddedNats, EmbeddedPostgres  # noqa: E402
from scriptbus.events import (  # noqa: E402
    OutputChunk,
    OutputStream,
    RunFinished,
    RunRequested,
    RunStatus,
    Subjects,
    ensure_streams,
    publish_event,
)
from scriptbus.events.positions import POSITION_CHANNEL  # noqa: E402

_LOG_TIME = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?runs: (ready at|caught up with the stream)", re.MULTILINE
)


def _line_chunks(total: int, chunk: int, line: int) -> list[bytes]:
    """`total` bytes of `line`-byte lines, cut into chunks of whole lines of about `chunk` bytes."""
    text = (b"x" * (line - 1) + b"\n") * max(1, chunk // line)
    count = total // len(text)
    return [text] * count


def _report(label: str, nbytes: int, seconds: float, ref: float | None = None) -> float:
    rate = nbytes / seconds
    ratio = f"  {rate / ref:5.2f} of raw COPY" if ref else ""
    print(f"{label:<52} {rate / 1e6:8.1f} MB/s  ({seconds:.2f}s){ratio}")
    return rate


@dataclass
class _Scratch:
    """A fresh database and stream prefix for one measurement."""

    nats_url: str
    js: nats.js.JetStreamContext
    s: Subjects
    admin: asyncpg.Connection
    dbname: str
    db_url: str

    @property
    def prefix(self) -> str:
        return self.s.prefix


@asynccontextmanager
async def _scratch(nats_url: str, admin_url: str) -> AsyncIterator[_Scratch]:
    """A new database and stream prefix, both removed afterwards."""
    prefix, dbname = "bench" + uuid.uuid4().hex[:8], "bench_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    base, _, _ = admin_url.rpartition("/")
    nc = await nats.connect(nats_url)
    s = Subjects(prefix)
    js = nc.jetstream(timeout=30)
    try:
        await ensure_streams(js, s)
        yield _Scratch(nats_url, js, s, admin, dbname, f"{base}/{dbname}")
    finally:
        try:
            await js.delete_stream(s.events_stream)
            await js.delete_stream(s.executors_stream)
            await js.delete_stream(f"KV_{s.claims_bucket}")
        finally:
            await nc.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await admin.close()


async def _publish_output(js: nats.js.JetStreamContext, s: Subjects, run_id: str, payloads: list[bytes]) -> None:
    acks = []
    offset = 0
    for data in payloads:
        chunk = OutputChunk(run_id, OutputStream.STDOUT, offset, offset, data)
        acks.append(js.publish(s.run_output(run_id), data, headers=chunk.headers()))
        offset += len(data)
        if len(acks) == 64:
            await asyncio.gather(*acks)
            acks = []
    await asyncio.gather(*acks)


async def throughput(nats_url: str, admin_url: str, args: argparse.Namespace, label: str, cwd: str | None) -> None:
    payloads = _line_chunks(args.total_mib * 1024 * 1024, args.chunk_kib * 1024, args.line_bytes)
    total = sum(len(p) for p in payloads)
    async with _scratch(nats_url, admin_url) as scratch:
        js, s, db_url, prefix = scratch.js, scratch.s, scratch.db_url, scratch.prefix
        run_id = str(uuid.uuid4())
        await publish_event(js, s, RunRequested(run_id=run_id, script="bench"))
        await _publish_output(js, s, run_id, payloads)
        size = len(payloads[0])
        print(f"{len(payloads)} chunks of {size} bytes ({args.line_bytes}-byte lines), {total / 1e6:.1f} MB")
        env = {
            **os.environ,
            "SCRIPTBUS_NATS_URL": nats_url,
            "SCRIPTBUS_DATABASE_URL": db_url,
            "SCRIPTBUS_PREFIX": prefix,
            "SCRIPTBUS_LOG_LEVEL": os.environ.get("BENCH_RECORDER_LOG_LEVEL", "INFO"),
        }
        proc = subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
            # e.g. BENCH_RECORDER_WRAP="py-spy record -o recorder.svg --" to see where its time goes
            [
                *os.environ.get("BENCH_RECORDER_WRAP", "").split(),
                sys.executable,
                "-m",
                "scriptbus.recorder",
                "--exit-when-caught-up",
            ],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        if os.environ.get("BENCH_RECORDER_LOG_LEVEL"):
            sys.stderr.write(proc.stderr)
        stamps = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t, _ in _LOG_TIME.findall(proc.stderr)]
        recorder_s = (stamps[-1] - stamps[0]).total_seconds()

        conn = await asyncpg.connect(db_url)
        try:
            stored = await conn.fetchval("SELECT sum(length(data)) FROM run_output")
            rows_stored = await conn.fetchval("SELECT count(*) FROM run_output")
            assert stored == total, (stored, total)
            limit = await copy_rate(db_url)
            await conn.execute("CREATE TABLE scratch (LIKE run_output INCLUDING ALL)")
            rows = []
            offset = 0
            for d in payloads:
                rows.append((uuid.UUID(run_id), offset, "stdout", offset, d))
                offset += len(d)
            columns = ["run_id", "offset", "stream", "stream_offset", "data"]
            started = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table("scratch", records=rows, columns=columns)
            same = _report("raw COPY of the same chunks, one commit", total, time.perf_counter() - started)
        finally:
            await conn.close()
        print(f"{'raw COPY, 64 KiB rows (limits.copy_rate)':<52} {limit / 1e6:8.1f} MB/s")
        _report(f"{label} recorder, NATS to PostgreSQL ({rows_stored} rows)", total, recorder_s, limit)
        print(f"{'':<52} {total / recorder_s / same:8.2f} of raw COPY of the same chunks")


async def latency(nats_url: str, admin_url: str, args: argparse.Namespace, label: str, cwd: str | None) -> None:
    async with _scratch(nats_url, admin_url) as scratch:
        await _latency(scratch, args, label, cwd)


async def _latency(scratch: _Scratch, args: argparse.Namespace, label: str, cwd: str | None) -> None:
    js, s, db_url = scratch.js, scratch.s, scratch.db_url
    env = {
        **os.environ,
        "SCRIPTBUS_NATS_URL": scratch.nats_url,
        "SCRIPTBUS_DATABASE_URL": db_url,
        "SCRIPTBUS_PREFIX": s.prefix,
        "SCRIPTBUS_LOG_LEVEL": os.environ.get("BENCH_RECORDER_LOG_LEVEL", "WARNING"),
    }
    recorder = None
    listener = None
    try:
        if os.environ.get("BENCH_PG_SETTING"):
            await scratch.admin.execute(f'ALTER DATABASE "{scratch.dbname}" SET {os.environ["BENCH_PG_SETTING"]}')
        pub_times: list[float] = []
        recorder = subprocess.Popen([sys.executable, "-m", "scriptbus.recorder"], env=env, cwd=cwd)  # noqa: ASYNC220
        positions: asyncio.Queue[int] = asyncio.Queue()
        for _ in range(600):
            try:
                listener = await asyncpg.connect(db_url)
                if await listener.fetchval("SELECT to_regclass('projection_position') IS NOT NULL"):
                    break
                await listener.close()
                listener = None
            except (OSError, asyncpg.PostgresError):
                listener = None
            await asyncio.sleep(0.1)
        assert listener is not None
        await listener.add_listener(POSITION_CHANNEL, lambda *a: positions.put_nowait(int(a[3])))

        async def timed(publish: asyncio.Future[int] | object) -> float:
            started = time.perf_counter()
            seq = await publish  # type: ignore[misc]
            pub_times.append((time.perf_counter() - started) * 1000)
            while await positions.get() < seq:
                pass
            return (time.perf_counter() - started) * 1000

        async def event(e: object) -> int:
            return (await publish_event(js, s, e)).seq  # type: ignore[arg-type]

        async def chunk(run_id: str) -> int:
            c = OutputChunk(run_id, OutputStream.STDOUT, 0, 0, b"hello\n")
            return (await js.publish(s.run_output(run_id), c.data, headers=c.headers())).seq

        await timed(event(RunRequested(run_id=str(uuid.uuid4()), script="warm-up")))
        times: list[float] = []
        for _ in range(args.lone // 3):
            run_id = str(uuid.uuid4())
            times.append(await timed(event(RunRequested(run_id=run_id, script="true"))))
            times.append(await timed(chunk(run_id)))
            times.append(await timed(event(RunFinished(run_id=run_id, status=RunStatus.SUCCEEDED, exit_code=0))))
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"{label} recorder, lone event, publish ack to projected (NOTIFY), {len(times)} events: "
            f"p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms "
            f"(of which the publish ack p50 {statistics.median(pub_times):.2f} ms)"
        )
    finally:
        if listener is not None:
            await listener.close()
        if recorder is not None:
            recorder.terminate()
            recorder.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-mib", type=int, default=50)
    parser.add_argument("--chunk-kib", type=int, default=20)
    parser.add_argument("--line-bytes", type=int, default=100)
    parser.add_argument("--lone", type=int, default=300, help="events for the latency measurement (0 skips)")
    parser.add_argument(
        "--baseline",
        help="a tree of another version whose scriptbus/ is run as the baseline, measured in turn with this one "
        "(e.g. git archive <commit> | tar -x -C DIR)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternations of baseline and this version")
    args = parser.parse_args()
    with ExitStack() as stack:
        nats_url = os.environ.get("SCRIPTBUS_NATS_URL")
        admin_url = os.environ.get("SCRIPTBUS_TEST_DATABASE_URL")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-recorder-")))
        if nats_url is None:
            server = EmbeddedNats(tmp / "nats")
            (tmp / "nats").mkdir()
            nats_url = server.start()
            stack.callback(server.stop)
        if admin_url is None:
            pg = EmbeddedPostgres(tmp / "postgres", database="postgres")
            admin_url = pg.start()
            stack.callback(pg.stop)
        variants: list[tuple[str, str | None]] = [("this", None)]
        if args.baseline:
            variants.insert(0, ("baseline", str(Path(args.baseline).resolve())))
        for round_ in range(args.rounds):
            for label, cwd in variants:
                print(f"-- round {round_ + 1}, {label}")
                if args.total_mib:
                    await throughput(nats_url, admin_url, args, label, cwd)
                if args.lone:
                    await latency(nats_url, admin_url, args, label, cwd)


if __name__ == "__main__":
    asyncio.run(main())
