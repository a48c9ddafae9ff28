"""A recorder SIGKILLed at any moment resumes with no lost and no duplicated output."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid

import asyncpg

from scriptbus.events import (
    OutputChunk,
    OutputStream,
    RunFinished,
    RunRequested,
    RunStatus,
    new_id,
    publish_event,
)
from tests.helpers.processes import ServiceProcess, StartService
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually

TOTAL_BYTES = 20 * 1024 * 1024
KILLS = 4


async def position(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval("SELECT last_seq FROM projection_position WHERE name = 'runs'")
    except asyncpg.UndefinedTableError:
        value = None
    finally:
        await conn.close()
    return int(value or 0)


async def wait_position(url: str, seq: int, timeout: float, recorder: ServiceProcess, interval: float = 0.05) -> None:
    """Wait until the recorder has applied `seq`; fail with its log."""

    async def reached() -> bool:
        return await position(url) >= seq

    try:
        await eventually(reached, timeout, interval, what=f"position {seq} applied")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{recorder.log()}") from None


async def test_sigkill_mid_stream_keeps_every_byte_once(
    bus: Bus, database_url: str, start_service: StartService
) -> None:
    _, js, s = bus
    rng = random.Random(20)
    run_id = new_id()
    await publish_event(js, s, RunRequested(run_id=run_id, script="yes | head -c 20M"))
    published = hashlib.sha256()
    chunks = 0
    last_seq = 0

    async def publish_output() -> None:
        nonlocal chunks, last_seq
        offset = 0
        while offset < TOTAL_BYTES:
            data = rng.randbytes(min(rng.randint(1, 16 * 1024), TOTAL_BYTES - offset))
            chunk = OutputChunk(run_id, OutputStream.STDOUT, offset, offset, data)
            ack = await js.publish(s.run_output(run_id), data, headers=chunk.headers())
            published.update(data)
            offset += len(data)
            chunks += 1
            last_seq = ack.seq

    # Small batches: many transactions, so a kill lands in the middle of the stream and of a batch.
    env = {"SCRIPTBUS_BATCH_SIZE": "10"}
    publisher = asyncio.create_task(publish_output())
    recorder = start_service("recorder", env=env)
    killed_at: list[int] = []
    for _ in range(KILLS):
        start = await position(database_url)
        goal = start + rng.randint(20, 150)
        # Polled often, so the kill lands close to `goal`: mid-stream, not after everything is applied.
        await wait_position(database_url, goal, 60, recorder, interval=0.01)
        recorder.kill()
        killed_at.append(await position(database_url))
        recorder = start_service("recorder", env=env)
    await publisher
    final = await publish_event(js, s, RunFinished(run_id=run_id, status=RunStatus.SUCCEEDED, exit_code=0))
    assert killed_at[-1] < last_seq, f"the kills at {killed_at} were not mid-stream (last seq {last_seq})"

    await wait_position(database_url, final.seq, 120, recorder)
    conn = await asyncpg.connect(database_url)
    try:
        stored = hashlib.sha256()
        expected_offset = 0
        rows = 0
        async with conn.transaction():
            cursor = conn.cursor(
                'SELECT "offset", data FROM run_output WHERE run_id = $1 ORDER BY "offset"', uuid.UUID(run_id)
            )
            async for row in cursor:
                assert row["offset"] == expected_offset, "a missing or overlapping chunk"
                stored.update(row["data"])
                expected_offset += len(row["data"])
                rows += 1
        run = await conn.fetchrow("SELECT status, output_bytes FROM runs WHERE id = $1", uuid.UUID(run_id))
    finally:
        await conn.close()
    assert rows == chunks
    assert expected_offset == TOTAL_BYTES
    assert stored.hexdigest() == published.hexdigest()
    assert run is not None and (run["status"], run["output_bytes"]) == ("succeeded", TOTAL_BYTES)
