"""The recorder against real NATS JetStream and PostgreSQL: what lands in the read models."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, PubAck

from scriptbus.events import (
    CommandCreated,
    CommandDeleted,
    CommandUpdated,
    Event,
    ExecutorHeartbeat,
    ExecutorLost,
    ExecutorStopped,
    OutputChunk,
    OutputStream,
    RunDeleted,
    RunFinished,
    RunRequested,
    RunStarted,
    RunStatus,
    RunStopRequested,
    Subjects,
    new_id,
    publish_event,
)
from scriptbus.recorder.batch import apply_batch
from scriptbus.recorder.feed import StreamMessage
from scriptbus.recorder.migrations import apply_migrations, migration_files
from scriptbus.recorder.position import NOTIFY_CHANNEL, projection_lag
from tests.helpers.processes import StartService
from tests.helpers.readmodels import dump_read_models
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually


async def position(url: str, name: str = "runs") -> int:
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval("SELECT last_seq FROM projection_position WHERE name = $1", name)
    except asyncpg.UndefinedTableError:
        value = None
    finally:
        await conn.close()
    return int(value or 0)


async def wait_position(url: str, seq: int, timeout: float = 30.0, name: str = "runs") -> None:
    """Wait until the recorder has applied stream sequence `seq` (of the executors stream if `name`
    is "executors")."""

    async def reached() -> bool:
        current = await position(url, name)
        assert current >= seq, f"position {current}"
        return True

    await eventually(reached, timeout, what=f"position {seq} of {name} applied")


async def publish_chunk(
    js: JetStreamContext,
    s: Subjects,
    run_id: str,
    offset: int,
    data: bytes,
    *,
    stream: str = "stdout",
    stream_offset: int | None = None,
    msg_id: str | None = None,
) -> PubAck:
    chunk = OutputChunk(run_id, OutputStream(stream), offset, offset if stream_offset is None else stream_offset, data)
    headers = chunk.headers()
    if msg_id is not None:
        headers["Nats-Msg-Id"] = msg_id
    return await js.publish(s.run_output(run_id), data, headers=headers)


async def fetch_run(url: str, run_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow("SELECT * FROM runs WHERE id = $1", uuid.UUID(run_id))
    finally:
        await conn.close()


async def fetch_output(url: str, run_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            'SELECT "offset", stream, stream_offset, data FROM run_output WHERE run_id = $1 ORDER BY "offset"',
            uuid.UUID(run_id),
        )
    finally:
        await conn.close()


async def test_run_lifecycle_is_projected(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    recorder = start_service("recorder")
    run_id, command_id = new_id(), new_id()
    req = RunRequested(
        run_id=run_id,
        script="echo $1",
        args=["a b"],
        env={"X": "1"},
        description="d",
        timeout_s=9.5,
        stop_grace_s=2,
        pool="gpu",
        host="h1",
        command_id=command_id,
    )
    ack = await publish_event(js, s, req)
    await wait_position(database_url, ack.seq)
    row = await fetch_run(database_url, run_id)
    assert row is not None
    assert row["status"] == "queued" and row["seq"] == ack.seq and row["created_at"] == req.occurred_at
    assert (row["script"], json.loads(row["args"]), json.loads(row["env"])) == (
        "echo $1",
        ["a b"],
        {"X": "1"},
    )
    assert (row["pool"], row["target_host"], str(row["command_id"])) == ("gpu", "h1", command_id)
    assert (row["timeout_s"], row["stop_grace_s"], row["description"]) == (9.5, 2, "d")

    started = RunStarted(run_id=run_id, host="h1", pid=4242, executor_id="ex1")
    ack = await publish_event(js, s, started)
    await wait_position(database_url, ack.seq)
    row = await fetch_run(database_url, run_id)
    assert row is not None
    assert (row["status"], row["host"], row["pid"], row["executor_id"]) == ("running", "h1", 4242, "ex1")
    assert row["started_at"] == started.occurred_at

    stop = RunStopRequested(run_id=run_id)
    ack = await publish_event(js, s, stop)
    await wait_position(database_url, ack.seq)
    row = await fetch_run(database_url, run_id)
    assert row is not None and row["status"] == "stopping" and row["stop_requested_at"] == stop.occurred_at

    fin = RunFinished(
        run_id=run_id,
        status=RunStatus.KILLED,
        signal=9,
        duration_s=1.5,
        output_truncated=True,
        dropped_bytes=7,
        survivors=[77],
        reason="needed SIGKILL",
    )
    await publish_event(js, s, fin)
    # A second verdict (e.g. lost, after the real end) and a late start change nothing.
    await publish_event(js, s, RunFinished(run_id=run_id, status=RunStatus.LOST, reason="late"))
    ack = await publish_event(js, s, RunStarted(run_id=run_id, host="other", pid=1, executor_id="ex2"))
    await wait_position(database_url, ack.seq)
    row = await fetch_run(database_url, run_id)
    assert row is not None
    assert (row["status"], row["signal"], row["exit_code"], row["host"]) == ("killed", 9, None, "h1")
    assert (row["finished_at"], row["duration_s"], row["output_truncated"]) == (fin.occurred_at, 1.5, True)
    assert (row["dropped_bytes"], json.loads(row["survivors"]), row["reason"]) == (7, [77], "needed SIGKILL")
    assert row["pid"] == 4242
    recorder.terminate()
    assert await asyncio.to_thread(recorder.wait, 15) == 0
    # Nothing went wrong on the way (a recorder starts again quietly after any error).
    assert "WARNING scriptbus.recorder" not in recorder.log(), recorder.log()


async def test_whole_history_in_one_batch(bus: Bus, database_url: str, start_service: StartService) -> None:
    """Stream order is the truth even when request, output and finish are applied in one transaction."""
    _, js, s = bus
    run_id, cancelled_id = new_id(), new_id()
    await publish_event(js, s, RunRequested(run_id=run_id, script="x"))
    await publish_event(js, s, RunStarted(run_id=run_id, host="h", pid=1, executor_id="e"))
    await publish_chunk(js, s, run_id, 0, b"hello\n")
    await publish_chunk(js, s, run_id, 6, b"oops\n", stream="stderr", stream_offset=0)
    await publish_event(js, s, RunFinished(run_id=run_id, status=RunStatus.FAILED, exit_code=3, host="h"))
    # Stopped before it started.
    await publish_event(js, s, RunRequested(run_id=cancelled_id, script="x"))
    await publish_event(js, s, RunStopRequested(run_id=cancelled_id))
    ack = await publish_event(js, s, RunFinished(run_id=cancelled_id, status=RunStatus.CANCELLED))

    start_service("recorder")
    await wait_position(database_url, ack.seq)
    row = await fetch_run(database_url, run_id)
    assert row is not None and (row["status"], row["exit_code"], row["output_bytes"]) == ("failed", 3, 11)
    out = await fetch_output(database_url, run_id)
    assert [(r["offset"], r["stream"], r["stream_offset"], r["data"]) for r in out] == [
        (0, "stdout", 0, b"hello\n"),
        (6, "stderr", 0, b"oops\n"),
    ]
    row = await fetch_run(database_url, cancelled_id)
    assert row is not None and row["status"] == "cancelled" and row["stop_requested_at"] is not None


async def test_output_bytes_duplicates_and_strays(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    start_service("recorder")
    run_id, unknown_id = new_id(), new_id()
    await publish_event(js, s, RunRequested(run_id=run_id, script="x"))
    raw = bytes(range(256))  # not UTF-8
    await publish_chunk(js, s, run_id, 0, raw)
    ack = await publish_chunk(js, s, run_id, 256, b"\xff\xfe\x00tail")
    await wait_position(database_url, ack.seq)
    # The same offset again (past JetStream's duplicate window, so with a new msg id), in a later
    # batch and in the same batch as new chunks: stored once, the first one wins, nothing breaks.
    await publish_chunk(js, s, run_id, 0, b"X" * 256, msg_id="again-0")
    await publish_chunk(js, s, run_id, 263, b"more")
    await publish_chunk(js, s, run_id, 263, b"MORE", msg_id="again-263")
    await publish_chunk(js, s, unknown_id, 0, b"nobody asked for this run")
    ack = await publish_chunk(js, s, run_id, 267, b"!")
    await wait_position(database_url, ack.seq)
    out = await fetch_output(database_url, run_id)
    assert b"".join(r["data"] for r in out) == raw + b"\xff\xfe\x00tail" + b"more!"
    assert [r["offset"] for r in out] == [0, 256, 263, 267]
    row = await fetch_run(database_url, run_id)
    assert row is not None and row["output_bytes"] == 268
    assert await fetch_output(database_url, unknown_id) == []
    assert await fetch_run(database_url, unknown_id) is None


async def test_delete_removes_run_and_later_output(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    start_service("recorder")
    run_id, kept_id = new_id(), new_id()
    for rid in (run_id, kept_id):
        await publish_event(js, s, RunRequested(run_id=rid, script="x"))
        await publish_chunk(js, s, rid, 0, b"output")
        await publish_event(js, s, RunFinished(run_id=rid, status=RunStatus.SUCCEEDED, exit_code=0))
    await publish_event(js, s, RunDeleted(run_id=run_id))
    ack = await publish_chunk(js, s, run_id, 6, b"straggler")
    await wait_position(database_url, ack.seq)
    assert await fetch_run(database_url, run_id) is None
    assert await fetch_output(database_url, run_id) == []
    assert [r["data"] for r in await fetch_output(database_url, kept_id)] == [b"output"]


async def test_unknown_and_broken_messages_are_skipped(
    bus: Bus, database_url: str, start_service: StartService
) -> None:
    _, js, s = bus
    recorder = start_service("recorder")
    await js.publish(f"{s.prefix}.runs.{new_id()}.renamed", json.dumps({"type": "run.renamed"}).encode())
    await js.publish(f"{s.prefix}.commands.{new_id()}.created", b'{"type": "command.created", "name": "x"}')
    await js.publish(f"{s.prefix}.runs.{new_id()}.started", b"{not json")
    await js.publish(f"{s.prefix}.runs.{new_id()}.started", b'{"type": "run.started", "run_id": "x"}')
    await publish_event(js, s, RunRequested(run_id="not-a-uuid", script="x"))
    await js.publish(f"{s.prefix}.runs.not-a-uuid.out", b"bytes")
    run_id = new_id()
    ack = await publish_event(js, s, RunRequested(run_id=run_id, script="still works"))
    await wait_position(database_url, ack.seq)
    row = await fetch_run(database_url, run_id)
    assert row is not None and row["script"] == "still works"
    assert recorder.proc.poll() is None


async def test_position_is_notified(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    start_service("recorder")
    # The table exists once migrations ran; wait for the recorder to be consuming.
    conn = await asyncpg.connect(database_url)
    try:
        await eventually(
            lambda: conn.fetchval("SELECT to_regclass('projection_position')"), 30, what="the recorder's tables"
        )
        seen: asyncio.Queue[str] = asyncio.Queue()
        await conn.add_listener(NOTIFY_CHANNEL, lambda *args: seen.put_nowait(args[3]))
        ack = await publish_event(js, s, RunRequested(run_id=new_id(), script="x"))
        while (payload := await asyncio.wait_for(seen.get(), 30)) != str(ack.seq):
            assert int(payload) < ack.seq
        assert await conn.fetchval("SELECT last_seq FROM projection_position WHERE name = 'runs'") == ack.seq
    finally:
        await conn.close()


async def test_deleted_and_aged_out_messages_are_not_gaps(
    bus: Bus, database_url: str, start_service: StartService
) -> None:
    _, js, s = bus
    ids = [new_id() for _ in range(6)]
    for rid in ids:
        await publish_event(js, s, RunRequested(run_id=rid, script="x"))
    await js.purge_stream(s.events_stream, seq=3)  # 1 and 2 aged out
    await js.delete_msg(s.events_stream, 4)
    await js.delete_msg(s.events_stream, 6)  # the last one too
    recorder = start_service("recorder", "--exit-when-caught-up")
    assert await asyncio.to_thread(recorder.wait, 60) == 0, recorder.log()
    assert await position(database_url) == 5
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id FROM runs ORDER BY seq")
    finally:
        await conn.close()
    assert [str(r["id"]) for r in rows] == [ids[2], ids[4]]
    assert "not delivered" not in recorder.log()


async def test_batch_is_exactly_once_and_stops_at_a_real_gap(database_url: str) -> None:
    """apply_batch directly: re-applied messages change nothing; a jump over messages that still
    exist stops the batch and asks for the feed to start again."""
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
        ids = [new_id() for _ in range(5)]
        msgs = [
            StreamMessage(
                seq=i + 1,
                subject=f"p.runs.{rid}.requested.default",
                data=RunRequested(run_id=rid, script=str(i)).model_dump_json().encode(),
            )
            for i, rid in enumerate(ids)
        ]
        msgs.append(
            StreamMessage(
                seq=6,
                subject=f"p.runs.{ids[0]}.out",
                data=b"abc",
                headers=OutputChunk(ids[0], OutputStream.STDOUT, 0, 0, b"abc").headers(),
            )
        )

        async def still_there(first: int, end: int) -> bool:
            return False

        async def all_deleted(first: int, end: int) -> bool:
            return True

        result = await apply_batch(conn, [msgs[0], msgs[1], msgs[3]], still_there)
        assert (result.position, result.applied, result.restart_from) == (2, 2, 3)
        result = await apply_batch(conn, msgs, still_there)
        assert (result.position, result.applied, result.restart_from) == (6, 4, None)
        result = await apply_batch(conn, msgs, still_there)  # delivered again after a crash
        assert (result.position, result.applied) == (6, 0)
        assert await conn.fetchval("SELECT count(*) FROM runs") == 5
        assert await conn.fetchval("SELECT count(*) FROM run_output") == 1
        late = StreamMessage(
            seq=9,
            subject=f"p.runs.{ids[0]}.out",
            data=b"def",
            headers=OutputChunk(ids[0], OutputStream.STDOUT, 3, 3, b"def").headers(),
        )
        result = await apply_batch(conn, [late], all_deleted)
        assert (result.position, result.applied) == (9, 1)
        assert await conn.fetchval("SELECT output_bytes FROM runs WHERE id = $1", uuid.UUID(ids[0])) == 6
    finally:
        await conn.close()


async def test_held_requests_give_the_read_models_of_one_message_at_a_time(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests are held and inserted together (run_requests.py): whatever the batch boundaries, the read
    models are those of applying the stream one message at a time."""
    a, b, c, scheduled = (new_id() for _ in range(4))

    def chunk(run_id: str, offset: int, data: bytes) -> tuple[str, bytes, dict[str, str]]:
        return f"p.runs.{run_id}.out", data, OutputChunk(run_id, OutputStream.STDOUT, offset, offset, data).headers()

    def event(e: Event) -> tuple[str, bytes, dict[str, str]]:
        return f"p.runs.{getattr(e, 'run_id', 'x')}.{e.type}", e.model_dump_json().encode(), {}

    stream = [
        event(RunRequested(run_id=a, script="a", pool="p1", env={"K": "v"}, args=["1"])),
        event(RunRequested(run_id=b, script="b", pool="p2")),
        event(RunStarted(run_id=a, host="h", pid=1, executor_id="e")),  # passes b, held
        chunk(a, 0, b"out of a\n"),  # needs a's row
        event(RunRequested(run_id=a, script="again")),  # the first request of a run wins
        event(RunRequested(run_id=c, script="c", timeout_s=2.5, description="d")),
        event(RunStopRequested(run_id=c, stopped_by="me")),  # c is held: it goes in first
        event(RunFinished(run_id=b, status=RunStatus.SUCCEEDED, exit_code=0, host="h", duration_s=0.2)),
        event(CommandCreated(command_id=new_id(), name="cmd", script="true")),  # not a run's: all go in
        event(RunRequested(run_id=scheduled, script="s", schedule_id=new_id())),
        event(RunFinished(run_id=a, status=RunStatus.FAILED, exit_code=1, host="h", duration_s=2.0)),
        event(RunDeleted(run_id=b)),
        event(RunRequested(run_id=b, script="b after its delete")),
    ]
    msgs = [StreamMessage(seq=i + 1, subject=s, data=d, headers=h) for i, (s, d, h) in enumerate(stream)]

    async def dump() -> dict[str, list[str]]:
        models = await dump_read_models(database_url)
        # When the row was written, not what: a purge waits for its own commit.
        models.pop("run_purges", None)
        return models

    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, rebuild=True)
        for m in msgs:
            assert (await apply_batch(conn, [m], _all_deleted)).applied == 1
        one_by_one = await dump()
        await apply_migrations(conn, rebuild=True)
        result = await apply_batch(conn, msgs, _all_deleted)
        assert (result.position, result.applied) == (len(msgs), len(msgs))
        assert await dump() == one_by_one
    finally:
        await conn.close()
    rows = {r["script"]: r for r in one_by_one["runs"] for r in [json.loads(r)]}
    assert rows["a"]["status"] == "failed" and rows["a"]["output_bytes"] == 9
    assert rows["c"]["stop_requested_at"] is not None and rows["c"]["timeout_s"] == 2.5
    assert rows["s"]["schedule_id"] is not None and "b after its delete" in rows
    assert "again" not in rows
    assert "message by message" not in caplog.text  # the batch went in whole, not in the careful way


async def _all_deleted(first: int, end: int) -> bool:
    return True


async def test_batch_from_a_stale_position_changes_nothing(database_url: str) -> None:
    """A batch applied from a position another recorder has moved since is rolled back whole, counters
    included, and the feed is sent to the stored position."""
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
        ids = [new_id() for _ in range(5)]
        msgs = [
            StreamMessage(
                seq=i + 1,
                subject=f"p.runs.{rid}.requested.default",
                data=RunRequested(run_id=rid, script=str(i)).model_dump_json().encode(),
            )
            for i, rid in enumerate(ids)
        ]

        async def no_gap(first: int, end: int) -> bool:
            return True

        result = await apply_batch(conn, msgs[:3], no_gap)
        assert (result.position, result.applied) == (3, 3)
        result = await apply_batch(conn, msgs[1:], no_gap, known_position=1)  # this recorder thinks 1
        assert (result.position, result.applied, result.restart_from) == (3, 0, 4)
        assert await conn.fetchval("SELECT count(*) FROM runs") == 3
        assert await conn.fetchval("SELECT value FROM run_stats WHERE name = 'requested'") == 3
        result = await apply_batch(conn, msgs[3:], no_gap, known_position=3)
        assert (result.position, result.applied, result.restart_from) == (5, 2, None)
        assert await conn.fetchval("SELECT count(*) FROM runs") == 5
        assert await conn.fetchval("SELECT value FROM run_stats WHERE name = 'requested'") == 5
    finally:
        await conn.close()


async def test_output_is_stored_compressed_with_lz4_where_the_server_has_it(database_url: str) -> None:
    """A chunk of log lines is stored compressed, with lz4 on a server built with it (pglz otherwise: the
    migration must not fail there), and reads back byte for byte."""
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
        try:
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)")
            has_lz4 = True
        except (asyncpg.FeatureNotSupportedError, asyncpg.PostgresSyntaxError):
            has_lz4 = False
        run_id = new_id()
        data = b"".join(b"2026-12-02T07:31:12Z INFO worker processed item %06d status=ok\n" % i for i in range(1000))
        request = RunRequested(run_id=run_id, script="x").model_dump_json().encode()
        chunk = OutputChunk(run_id, OutputStream.STDOUT, 0, 0, data).headers()
        msgs = [
            StreamMessage(1, f"p.runs.{run_id}.requested.default", request),
            StreamMessage(2, f"p.runs.{run_id}.out", data, chunk),
        ]

        async def no_gap(first: int, end: int) -> bool:
            return True

        assert (await apply_batch(conn, msgs, no_gap)).applied == 2
        row = await conn.fetchrow(
            "SELECT data, pg_column_compression(data) AS how FROM run_output WHERE run_id = $1", run_id
        )
        assert row is not None and bytes(row["data"]) == data
        assert row["how"] == ("lz4" if has_lz4 else "pglz")
    finally:
        await conn.close()


async def test_concurrent_starts_and_two_recorders(bus: Bus, database_url: str, start_service: StartService) -> None:
    """Migrations don't race, and two recorders at once still store every chunk once."""
    _, js, s = bus
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        applied = [r for r in results if r]
        assert len(applied) == 1 and applied[0] == [v for v, _ in migration_files()]
        versions = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == applied[0]
    finally:
        for c in conns:
            await c.close()
    first, second = start_service("recorder"), start_service("recorder")
    run_id = new_id()
    await publish_event(js, s, RunRequested(run_id=run_id, script="x"))
    expected = b""
    for i in range(200):
        data = f"line {i}\n".encode()
        ack = await publish_chunk(js, s, run_id, len(expected), data)
        expected += data
    await wait_position(database_url, ack.seq)
    assert b"".join(r["data"] for r in await fetch_output(database_url, run_id)) == expected
    for r in (first, second):
        assert r.proc.poll() is None, r.log()
        assert "Traceback" not in r.log() and "cannot be projected" not in r.log()


async def test_lag(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    recorder = start_service("recorder")
    ack = await publish_event(js, s, RunRequested(run_id=new_id(), script="x"))
    await wait_position(database_url, ack.seq)
    conn = await asyncpg.connect(database_url)
    try:
        assert await projection_lag(conn, js, s) == 0
        recorder.terminate()
        assert await asyncio.to_thread(recorder.wait, 15) == 0
        for _ in range(3):
            await publish_event(js, s, RunRequested(run_id=new_id(), script="x"))
        assert await projection_lag(conn, js, s) == 3
    finally:
        await conn.close()


async def test_rebuild_reproduces_the_read_models(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    # Small batches live, one big batch in the rebuild: batch boundaries must not matter.
    live = start_service("recorder", env={"SCRIPTBUS_BATCH_SIZE": "3"})
    done, stopped, deleted, cancelled, queued = (new_id() for _ in range(5))
    for rid in (done, stopped, deleted):
        await publish_event(js, s, RunRequested(run_id=rid, script=f"run {rid}", args=["1"], env={"A": "b"}))
        await publish_event(js, s, RunStarted(run_id=rid, host="h1", pid=100, executor_id="ex"))
        offset = 0
        for i in range(20):
            data = bytes([i, 0xFF, 0xC3, 0x28]) + f"line {i}\n".encode()
            await publish_chunk(js, s, rid, offset, data, stream="stdout" if i % 3 else "stderr")
            offset += len(data)
    await publish_event(js, s, RunFinished(run_id=done, status=RunStatus.SUCCEEDED, exit_code=0, duration_s=1))
    await publish_event(js, s, RunStopRequested(run_id=stopped))
    await publish_event(js, s, RunFinished(run_id=stopped, status=RunStatus.STOPPED, signal=15, survivors=[5]))
    await publish_event(js, s, RunFinished(run_id=stopped, status=RunStatus.LOST))
    await publish_event(js, s, RunFinished(run_id=deleted, status=RunStatus.FAILED, exit_code=1))
    await publish_event(js, s, RunDeleted(run_id=deleted))
    await publish_chunk(js, s, deleted, 10_000, b"after delete")
    await publish_event(js, s, RunRequested(run_id=cancelled, script="never"))
    await publish_event(js, s, RunStopRequested(run_id=cancelled))
    await publish_event(js, s, RunFinished(run_id=cancelled, status=RunStatus.CANCELLED))
    await publish_event(js, s, RunRequested(run_id=queued, script="waits", host="h2", command_id=new_id()))
    await js.publish(f"{s.prefix}.runs.{new_id()}.renamed", b'{"type": "run.renamed"}')
    command_id = new_id()
    await publish_event(js, s, CommandCreated(command_id=command_id, name="backup", script="tar c /"))
    await publish_event(js, s, CommandUpdated(command_id=command_id, name="backup", script="tar cz /"))
    gone = new_id()
    await publish_event(js, s, CommandCreated(command_id=gone, name="old", script="true"))
    await publish_event(js, s, CommandDeleted(command_id=gone, name="old"))
    for event in fleet_history():
        await publish_event(js, s, event)
    ack = await publish_chunk(js, s, new_id(), 0, b"unknown run")
    await wait_position(database_url, ack.seq)
    await wait_position(database_url, (await js.stream_info(s.executors_stream)).state.last_seq, name="executors")
    live.terminate()
    assert await asyncio.to_thread(live.wait, 15) == 0
    before = await dump_read_models(database_url)
    assert len(before["runs"]) == 4 and len(before["run_output"]) == 40
    assert len(before["commands"]) == 1 and len(before["executors"]) == 2 and before["run_stats"]

    conn = await asyncpg.connect(database_url)
    try:  # something no event explains, which a rebuild must not keep
        await conn.execute(
            "INSERT INTO runs (id, seq, status, script, created_at) VALUES ($1, 999, 'queued', 'junk', now())",
            uuid.uuid4(),
        )
    finally:
        await conn.close()
    rebuild = start_service("recorder", "--rebuild", "--exit-when-caught-up")
    assert await asyncio.to_thread(rebuild.wait, 60) == 0, rebuild.log()
    after = await dump_read_models(database_url)
    assert {k: v for k, v in after.items() if k != "run_stats"} == {k: v for k, v in before.items() if k != "run_stats"}
    # Deleting forgets: the stream no longer holds the deleted run's history, so the counters it fed
    # (one request, one start, one failure, its output bytes) are all the rebuild does not reproduce.
    stats_before, stats_after = run_stats(before), run_stats(after)
    assert stats_before[("requested", "default")] - stats_after[("requested", "default")] == 1
    assert stats_before[("started", "h1")] - stats_after[("started", "h1")] == 1
    assert stats_before[("finished", "failed")] == 1 and ("finished", "failed") not in stats_after
    assert stats_before[("output_bytes", "")] - stats_after[("output_bytes", "")] == offset
    fed = {("requested", "default"), ("started", "h1"), ("finished", "failed"), ("output_bytes", "")}
    assert {k: v for k, v in stats_after.items() if k not in fed} == {
        k: v for k, v in stats_before.items() if k not in fed
    }


def run_stats(dump: dict[str, list[str]]) -> dict[tuple[str, str], float]:
    rows = [json.loads(row) for row in dump["run_stats"]]
    return {(row["name"], row["label"]): row["value"] for row in rows}


def test_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scriptbus", "recorder", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "--rebuild" in out.stdout and "--exit-when-caught-up" in out.stdout


async def test_backlog_larger_than_the_servers_client_buffer(
    bus: Bus, database_url: str, start_service: StartService
) -> None:
    """A backlog of full 64 KiB chunks beyond nats-server's 64 MiB per-client buffer is read in
    byte-bounded batches: no slow-consumer disconnect, no lost delivery, every byte stored."""
    _, js, s = bus
    run_id = new_id()
    await publish_event(js, s, RunRequested(run_id=run_id, script="x"))
    size, count = 64 * 1024, 1100
    digest = hashlib.sha256()
    pending = []
    for i in range(count):
        data = i.to_bytes(4, "big") * (size // 4)
        digest.update(data)
        chunk = OutputChunk(run_id, OutputStream.STDOUT, i * size, i * size, data)
        pending.append(js.publish(s.run_output(run_id), data, headers=chunk.headers()))
        if len(pending) == 50:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    recorder = start_service("recorder", "--exit-when-caught-up")
    assert await asyncio.to_thread(recorder.wait, 120) == 0, recorder.log()
    log = recorder.log().split("runs: caught up with the stream")[0]
    assert "disconnected" not in log and "WARNING scriptbus.recorder" not in log, log
    stored = hashlib.sha256()
    for row in await fetch_output(database_url, run_id):
        stored.update(row["data"])
    assert stored.hexdigest() == digest.hexdigest()


async def test_recovers_from_lost_database_connection_and_consumer(
    bus: Bus, database_url: str, pg_admin_url: str, start_service: StartService
) -> None:
    """PostgreSQL dropping the connection (as on a restart) and the consumer vanishing (as on a
    NATS server restart) cost a retry, never an event."""
    _, js, s = bus
    recorder = start_service("recorder")
    first = new_id()
    ack = await publish_event(js, s, RunRequested(run_id=first, script="x"))
    await wait_position(database_url, ack.seq)
    dbname = database_url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(pg_admin_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'scriptbus-recorder'",
            dbname,
        )
    finally:
        await admin.close()
    assert killed == 2  # one connection per stream projected
    second = new_id()
    await publish_event(js, s, RunRequested(run_id=second, script="x"))
    ack = await publish_chunk(js, s, second, 0, b"after reconnect")
    await wait_position(database_url, ack.seq)

    names = [c.name async for c in _consumers(js, s.events_stream)]
    assert len(names) == 1
    await js.delete_consumer(s.events_stream, names[0])
    ack = await publish_chunk(js, s, second, 15, b", after a new consumer")
    await wait_position(database_url, ack.seq)
    out = await fetch_output(database_url, second)
    assert b"".join(r["data"] for r in out) == b"after reconnect, after a new consumer"
    assert recorder.proc.poll() is None


async def _consumers(js: JetStreamContext, stream: str) -> AsyncIterator[ConsumerInfo]:
    for info in await js.consumers_info(stream):
        if info.name.startswith("recorder_"):
            yield info


async def test_a_message_postgresql_rejects_costs_only_itself(
    bus: Bus, database_url: str, start_service: StartService
) -> None:
    """A NUL byte fits in JSON but not in a PostgreSQL text column: that run is skipped with an
    error, the rest of its batch is applied, and the recorder goes on."""
    _, js, s = bus
    before, poisoned, after = new_id(), new_id(), new_id()
    await publish_event(js, s, RunRequested(run_id=before, script="ok"))
    await publish_chunk(js, s, before, 0, b"kept")
    await publish_event(js, s, RunRequested(run_id=poisoned, script="a\x00b"))
    await publish_event(js, s, RunRequested(run_id=new_id(), script="ok", env={"A": "\x00"}))
    await publish_event(js, s, RunRequested(run_id=after, script="ok"))
    ack = await publish_chunk(js, s, after, 0, b"also kept")
    recorder = start_service("recorder")
    await wait_position(database_url, ack.seq)
    assert [r["data"] for r in await fetch_output(database_url, before)] == [b"kept"]
    assert [r["data"] for r in await fetch_output(database_url, after)] == [b"also kept"]
    assert await fetch_run(database_url, poisoned) is None
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM runs") == 2
    finally:
        await conn.close()
    assert recorder.log().count("cannot be projected") == 2, recorder.log()
    assert recorder.proc.poll() is None


def fleet_history() -> list[Event]:
    """Host a: up, restarted (a new executor id), and an old verdict about its first life; host b: lost."""
    started = datetime(2026, 1, 1, tzinfo=UTC)
    beat = functools.partial(
        ExecutorHeartbeat, pools=["default"], version="1", capacity=4, started_at=started, interval_s=0.5
    )
    return [
        beat(host="a", executor_id="a1", running=1, running_run_ids=["r1"]),
        beat(host="a", executor_id="a1", running=2),
        ExecutorStopped(host="a", executor_id="a1"),
        beat(host="a", executor_id="a2", running=0, labels={"gpu": "no"}),
        ExecutorLost(host="a", executor_id="a1", last_seen=started),  # about a1: changes nothing
        beat(host="b", executor_id="b1", running=3, draining=True),
        ExecutorLost(host="b", executor_id="b1", last_seen=started),
    ]


async def test_commands_and_fleet(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    start_service("recorder")
    command_id = new_id()
    created = CommandCreated(
        command_id=command_id, name="backup", script="tar c /", env={"A": "1"}, timeout_s=60, pool="p"
    )
    await publish_event(js, s, created)
    updated = CommandUpdated(command_id=command_id, name="backup2", script="tar cz /", description="gz")
    await publish_event(js, s, updated)
    other = new_id()
    await publish_event(js, s, CommandCreated(command_id=other, name="old", script="true"))
    await publish_event(js, s, CommandDeleted(command_id=other, name="old"))
    reused = new_id()
    ack = await publish_event(js, s, CommandCreated(command_id=reused, name="old", script="false"))
    for event in fleet_history():
        fleet_ack = await publish_event(js, s, event)
    await wait_position(database_url, ack.seq)
    await wait_position(database_url, fleet_ack.seq, name="executors")
    conn = await asyncpg.connect(database_url)
    try:
        rows = {r["name"]: r for r in await conn.fetch("SELECT * FROM commands")}
        executors = {r["host"]: r for r in await conn.fetch("SELECT * FROM executors")}
        notified = await conn.fetchval("SELECT last_seq FROM projection_position WHERE name = 'runs'")
    finally:
        await conn.close()
    assert set(rows) == {"backup2", "old"} and str(rows["old"]["id"]) == reused
    c = rows["backup2"]
    assert (c["script"], c["description"], json.loads(c["env"]), c["timeout_s"], c["pool"]) == (
        "tar cz /",
        "gz",
        {},
        None,
        "default",
    )
    assert (c["version"], c["created_at"], c["updated_at"]) == (2, created.occurred_at, updated.occurred_at)
    a, b = executors["a"], executors["b"]
    assert (a["executor_id"], a["state"], a["running"], json.loads(a["labels"])) == (
        "a2",
        "online",
        0,
        {"gpu": "no"},
    )
    assert (b["state"], b["running"], json.loads(b["running_run_ids"])) == ("lost", 3, [])
    assert json.loads(b["pools"]) == ["default"] and b["capacity"] == 4 and b["interval_s"] == 0.5
    assert notified == ack.seq  # the executors stream has its own position


async def test_run_stats_count_each_fact_once(bus: Bus, database_url: str, start_service: StartService) -> None:
    _, js, s = bus
    start_service("recorder", env={"SCRIPTBUS_BATCH_SIZE": "2"})
    runs = [new_id() for _ in range(3)]
    for rid, pool in zip(runs, ["p1", "p1", "p2"], strict=True):
        await publish_event(js, s, RunRequested(run_id=rid, script="x", pool=pool))
        await publish_event(js, s, RunStarted(run_id=rid, host="h", pid=1, executor_id="e"))
        await publish_event(js, s, RunStarted(run_id=rid, host="h", pid=1, executor_id="e"))  # again
        await publish_chunk(js, s, rid, 0, b"12345")
        await publish_chunk(js, s, rid, 0, b"12345", msg_id=f"again-{rid}")  # a duplicate chunk
    await publish_event(js, s, RunRequested(run_id=runs[0], script="x", pool="p1"))  # a duplicate request
    await publish_event(js, s, RunFinished(run_id=runs[0], status=RunStatus.SUCCEEDED, duration_s=0.2))
    await publish_event(js, s, RunFinished(run_id=runs[0], status=RunStatus.LOST, duration_s=99))
    await publish_event(js, s, RunFinished(run_id=runs[1], status=RunStatus.FAILED, exit_code=1, duration_s=42))
    ack = await publish_event(js, s, RunDeleted(run_id=runs[1]))
    await wait_position(database_url, ack.seq)
    conn = await asyncpg.connect(database_url)
    try:
        stats = {(r["name"], r["label"]): r["value"] for r in await conn.fetch("SELECT * FROM run_stats")}
    finally:
        await conn.close()
    assert stats[("requested", "p1")] == 2 and stats[("requested", "p2")] == 1
    assert stats[("started", "h")] == 3
    assert stats[("finished", "succeeded")] == 1 and stats[("finished", "failed")] == 1
    assert ("finished", "lost") not in stats
    assert stats[("output_bytes", "")] == 15
    assert (stats[("duration_count", "")], stats[("duration_sum", "")]) == (2, 42.2)
    buckets = {label: v for (name, label), v in stats.items() if name == "duration_bucket"}
    assert (buckets.get("0.1", 0), buckets["0.5"], buckets["30"], buckets["60"]) == (
        0,
        1,
        1,
        2,
    )
    assert buckets["+Inf"] == 2
