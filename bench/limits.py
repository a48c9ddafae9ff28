"""This machine's own limits, measured in the same run as scriptbus, so figures are ratios, not boasts."""

from __future__ import annotations

import asyncio
import os
import resource
import time

import asyncpg

CHUNK = 64 * 1024


async def bash_spawn_rate(count: int = 400, concurrency: int = 32) -> float:
    """`bash -c true` processes per second from the stdlib asyncio loop, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", "true", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
            )
            await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - start)


async def bash_cpu_per_spawn(count: int = 200) -> float:
    """Seconds of CPU of one `bash -c true` (its own user + system time, from the reaped children's rusage):
    the floor of any system's CPU per run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", "true", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
        )
        await proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / count


async def pipe_throughput(total: int = 256 * 1024 * 1024) -> float:
    """Bytes per second read from a child's stdout pipe in 64 KiB reads."""
    proc = await asyncio.create_subprocess_exec("head", "-c", str(total), "/dev/zero", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    got = 0
    start = time.perf_counter()
    while chunk := await proc.stdout.read(CHUNK):
        got += len(chunk)
    elapsed = time.perf_counter() - start
    await proc.wait()
    return got / elapsed


async def copy_rate(database_url: str, total: int = 128 * 1024 * 1024, line: bytes | None = None) -> float:
    """Bytes per second of 64 KiB bytea rows written with COPY into a scratch table, committed: random bytes,
    or `line` repeated (a figure's own output, which PostgreSQL compresses as it would the figure's rows).

    An ordinary (WAL-logged) table, as the recorder's are: a TEMP table skips the log and would set a
    limit no durable store reaches."""
    payload = os.urandom(CHUNK) if line is None else (line * (CHUNK // len(line) + 1))[:CHUNK]
    rows = [(i, payload) for i in range(total // CHUNK)]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (n bigint, data bytea)")
        start = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("bench_copy", records=rows, columns=["n", "data"])
        return len(rows) * CHUNK / (time.perf_counter() - start)
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        await conn.close()
