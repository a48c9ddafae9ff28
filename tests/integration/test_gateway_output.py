"""Output through the gateway: exact bytes by offset and stream, the text tail, and `follow` joining the
stored part to the live part with no gap and no duplicate. The executor's side (started, output chunks,
finished) is published by hand, so no script runs."""

from __future__ import annotations

import os
from typing import Any

from scriptbus.events import (
    OutputChunk,
    OutputStream,
    RunDeleted,
    RunFinished,
    RunStarted,
    RunStatus,
    publish_event,
)
from tests.helpers.gateway import Api, create
from tests.helpers.output import Follower, parse_chunks
from tests.helpers.waiting import eventually


class FakeExecutor:
    """Publishes what an executor would for one run, keeping both offsets."""

    def __init__(self, api: Api, run_id: str) -> None:
        self.api = api
        self.run_id = run_id
        self.offset = 0
        self.stream_offsets = {OutputStream.STDOUT: 0, OutputStream.STDERR: 0}
        self.written = {OutputStream.STDOUT: b"", OutputStream.STDERR: b""}
        self.combined = b""

    async def start(self) -> None:
        await publish_event(
            self.api.js,
            self.api.subjects,
            RunStarted(run_id=self.run_id, host="fake-host", pid=4242, executor_id="fake-executor"),
        )

    async def write(self, data: bytes, stream: OutputStream = OutputStream.STDOUT) -> None:
        chunk = OutputChunk(self.run_id, stream, self.offset, self.stream_offsets[stream], data, "fake-host")
        await self.api.js.publish(self.api.subjects.run_output(self.run_id), data, headers=chunk.headers())
        self.offset += len(data)
        self.stream_offsets[stream] += len(data)
        self.written[stream] += data
        self.combined += data

    async def finish(self, status: RunStatus = RunStatus.SUCCEEDED, exit_code: int | None = 0) -> None:
        await publish_event(
            self.api.js,
            self.api.subjects,
            RunFinished(
                run_id=self.run_id,
                status=status,
                exit_code=exit_code,
                host="fake-host",
                duration_s=0.5,
                output_bytes=self.offset,
            ),
        )


async def running(api: Api) -> FakeExecutor:
    run = await create(api, pool="fake")
    executor = FakeExecutor(api, run["id"])
    await executor.start()
    await wait_run(api, run["id"], lambda r: r["status"] == "running")
    return executor


async def wait_run(api: Api, run_id: str, ok: Any, timeout: float = 20.0) -> dict[str, Any]:
    async def there() -> dict[str, Any]:
        response = await api.client.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        assert ok(run), f"last seen {run}"
        return run

    return await eventually(there, timeout, what=f"run {run_id} there")


async def output(api: Api, run_id: str, **params: Any) -> bytes:
    response = await api.client.get(f"/api/v1/runs/{run_id}/output", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    return response.content


async def test_output_by_offset_and_stream_is_exact(api: Api) -> None:
    ex = await running(api)
    await ex.write(b"out1\n")
    await ex.write(b"err\xff\n", OutputStream.STDERR)
    await ex.write(b"out2\xfe\n")
    await ex.write(b"\x00\x01binary", OutputStream.STDERR)
    await ex.finish(RunStatus.FAILED, exit_code=3)
    run = await wait_run(api, ex.run_id, lambda r: r["status"] == "failed")
    assert run["exit_code"] == 3 and run["host"] == "fake-host" and run["pid"] == 4242
    assert run["output_bytes"] == len(ex.combined)
    assert run["output"] == ex.combined.decode("utf-8", errors="replace")

    everything = ex.combined
    stdout = ex.written[OutputStream.STDOUT]
    stderr = ex.written[OutputStream.STDERR]
    assert await output(api, ex.run_id) == everything
    assert await output(api, ex.run_id, stream="stdout") == stdout == b"out1\nout2\xfe\n"
    assert await output(api, ex.run_id, stream="stderr") == stderr == b"err\xff\n\x00\x01binary"
    for offset in range(len(everything) + 2):
        assert await output(api, ex.run_id, offset=offset) == everything[offset:], offset
    for offset in range(len(stdout) + 1):
        assert await output(api, ex.run_id, offset=offset, stream="stdout") == stdout[offset:], offset
    for offset in range(len(stderr) + 1):
        assert await output(api, ex.run_id, offset=offset, stream="stderr") == stderr[offset:], offset
    # A finished run with follow: just its bytes, at once.
    assert await output(api, ex.run_id, follow="true", offset=2) == everything[2:]


async def test_long_output_pages_through_and_the_tail_is_the_last_64_kib(api: Api) -> None:
    ex = await running(api)
    # 1500 chunks of 66 bytes (several pages of rows), every 7th on stderr.
    for i in range(1500):
        line = f"line {i:05d} {'é' * 20} {'x' * 13}\n".encode()
        await ex.write(line, OutputStream.STDERR if i % 7 == 0 else OutputStream.STDOUT)
    # Ten more bytes put the tail's first byte on the second byte of an "é".
    await ex.write(b"tail-end!\n")
    await ex.finish()
    run = await wait_run(api, ex.run_id, lambda r: r["status"] == "succeeded")
    assert await output(api, ex.run_id) == ex.combined
    assert await output(api, ex.run_id, stream="stderr") == ex.written[OutputStream.STDERR]
    assert await output(api, ex.run_id, stream="stdout", offset=70_000) == ex.written[OutputStream.STDOUT][70_000:]
    cut = len(ex.combined) - 64 * 1024
    assert ex.combined[cut - 1 : cut + 1] == "é".encode()
    # The half character is dropped rather than shown as U+FFFD.
    assert run["output"].encode() == ex.combined[cut + 1 :]


async def test_megabytes_of_binary_output_come_back_exact(api: Api) -> None:
    ex = await running(api)
    # 3 MB in chunks of 60,000 random bytes (not aligned to anything), alternating streams.
    for i in range(50):
        await ex.write(os.urandom(60_000), OutputStream.STDERR if i % 3 == 0 else OutputStream.STDOUT)
    await ex.finish()
    await wait_run(api, ex.run_id, lambda r: r["status"] == "succeeded")
    assert await output(api, ex.run_id) == ex.combined
    for offset in (1, 1024 * 1024 - 1, 1024 * 1024, 2_500_001):
        assert await output(api, ex.run_id, offset=offset) == ex.combined[offset:]
    for stream in OutputStream:
        written = ex.written[stream]
        assert await output(api, ex.run_id, stream=stream.value) == written
        assert await output(api, ex.run_id, stream=stream.value, offset=654_321) == written[654_321:]


async def test_follow_sends_stored_then_live_bytes_and_ends_on_finish(api: Api) -> None:
    ex = await running(api)
    await ex.write(b"stored line\n")
    await wait_run(api, ex.run_id, lambda r: r["output_bytes"] == len(ex.combined))

    follower = Follower(api, ex.run_id)
    assert await follower.opened() == 200
    await follower.until(b"stored line\n")
    await ex.write(b"live line\n")
    await follower.until(b"stored line\nlive line\n")
    await ex.write(b"err \xff", OutputStream.STDERR)
    await ex.write(b"partial")
    await follower.until(ex.combined)
    assert not follower.ended.is_set()
    await ex.finish()
    assert await follower.end() == ex.combined


async def test_follow_started_while_the_projection_lags_has_no_gap_and_no_duplicate(api: Api) -> None:
    for attempt in range(5):
        ex = await running(api)
        # Published right before following: some of it may be in PostgreSQL, some only in the stream.
        for i in range(50):
            await ex.write(f"{attempt}:{i}\n".encode())
        follower = Follower(api, ex.run_id)
        for i in range(50, 100):
            await ex.write(f"{attempt}:{i}\n".encode())
        await ex.finish()
        assert await follower.end() == ex.combined


async def test_follow_of_one_stream_from_an_offset(api: Api) -> None:
    ex = await running(api)
    await ex.write(b"o1\n")
    await ex.write(b"e1\n", OutputStream.STDERR)
    follower = Follower(api, ex.run_id, stream="stderr", offset=1)
    await follower.until(b"1\n")
    await ex.write(b"o2\n")
    await ex.write(b"e2\n", OutputStream.STDERR)
    await ex.finish()
    assert await follower.end() == b"1\ne2\n"


async def test_follow_ends_when_the_run_is_cancelled_or_deleted(api: Api) -> None:
    queued = await create(api, pool="fake")
    follower = Follower(api, queued["id"])
    assert await follower.opened() == 200
    assert (await api.client.post(f"/api/v1/runs/{queued['id']}/stop")).status_code == 202
    assert await follower.end() == b""

    ex = await running(api)
    await ex.write(b"bye\n")
    follower = Follower(api, ex.run_id)
    await follower.until(b"bye\n")
    await publish_event(api.js, api.subjects, RunDeleted(run_id=ex.run_id))
    assert await follower.end() == b"bye\n"


async def test_many_followers_and_a_client_that_leaves(api: Api) -> None:
    ex = await running(api)
    consumers_before = await consumer_count(api)
    followers = [Follower(api, ex.run_id) for _ in range(10)]
    leaver = Follower(api, ex.run_id)
    await ex.write(b"one\n")
    await leaver.until(b"one\n")
    await leaver.aclose()
    await ex.write(b"two\n")
    await ex.finish()
    for follower in followers:
        assert await follower.end() == b"one\ntwo\n"
    # The gateway is still serving after a client went away mid-stream, and left no consumer behind.
    await wait_run(api, ex.run_id, lambda r: r["status"] == "succeeded")

    async def consumers_removed() -> bool:
        return await consumer_count(api) <= consumers_before

    await eventually(consumers_removed, 30, interval=0.2, what="the followers' consumers removed")
    assert "Traceback" not in api.gateway.log()


async def consumer_count(api: Api) -> int:
    info = await api.js.stream_info(api.subjects.events_stream)
    return int(info.state.consumer_count)


async def chunks(api: Api, run_id: str, **params: Any) -> list[tuple[str, int, bytes]]:
    response = await api.client.get(f"/api/v1/runs/{run_id}/output/chunks", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return parse_chunks(response.content)


async def test_chunks_say_which_stream_wrote_each_exact_piece(api: Api) -> None:
    ex = await running(api)
    await ex.write(b"out1\n")
    await ex.write(b"err \xff\n", OutputStream.STDERR)
    await ex.write("\x1b[31m\u00e9t\u00e9\x1b[0m\n".encode())
    await ex.write(b"\xe2\x82", OutputStream.STDERR)  # a character cut between two chunks
    await ex.write(b"\xac\n", OutputStream.STDERR)
    await ex.finish()
    await wait_run(api, ex.run_id, lambda r: r["status"] == "succeeded")

    got = await chunks(api, ex.run_id)
    assert got == [
        ("stdout", 0, b"out1\n"),
        ("stderr", 5, b"err \xff\n"),
        ("stdout", 11, "\x1b[31m\u00e9t\u00e9\x1b[0m\n".encode()),
        ("stderr", 26, b"\xe2\x82"),
        ("stderr", 28, b"\xac\n"),
    ]
    raw = (await api.client.get(f"/api/v1/runs/{ex.run_id}/output/chunks")).text.splitlines()
    assert '"data":"out1\\n"' in raw[0] and "base64" not in raw[0]  # valid UTF-8 travels as text
    assert '"base64":true' in raw[1]
    # Same query, same bytes as /output: from an offset, a tail, a limit, one stream.
    queries: list[dict[str, Any]] = [
        {"offset": 7},
        {"tail": 4},
        {"offset": 3, "limit": 10},
        {"stream": "stderr", "offset": 2},
    ]
    for params in queries:
        pieces = await chunks(api, ex.run_id, **params)
        assert b"".join(data for _, _, data in pieces) == await output(api, ex.run_id, **params), params
    assert await chunks(api, ex.run_id, tail=3) == [("stderr", 27, b"\x82"), ("stderr", 28, b"\xac\n")]
    assert await chunks(api, ex.run_id, stream="stderr", offset=2) == [
        ("stderr", 2, b"r \xff\n"),
        ("stderr", 6, b"\xe2\x82"),
        ("stderr", 8, b"\xac\n"),
    ]
    refused = await api.client.get(f"/api/v1/runs/{ex.run_id}/output/chunks", params={"offset": 1, "tail": 2})
    assert refused.status_code == 422 and "tail" in refused.text
    missing = await api.client.get("/api/v1/runs/00000000-0000-0000-0000-000000000000/output/chunks")
    assert missing.status_code == 404


async def test_chunks_follow_stored_then_live_pieces_with_their_streams(api: Api) -> None:
    ex = await running(api)
    await ex.write(b"stored\n")
    await wait_run(api, ex.run_id, lambda r: r["output_bytes"] == len(ex.combined))
    follower = Follower(api, ex.run_id, route="output/chunks")
    assert await follower.opened() == 200

    async def seen(expected: list[tuple[str, int, bytes]]) -> None:
        def arrived() -> bool:
            whole = follower.received[: follower.received.rfind(b"\n") + 1]
            assert parse_chunks(whole) == expected
            return True

        await eventually(arrived, interval=0.01, what=f"{len(expected)} chunks followed")

    await seen([("stdout", 0, b"stored\n")])
    await ex.write(b"live err\n", OutputStream.STDERR)
    await seen([("stdout", 0, b"stored\n"), ("stderr", 7, b"live err\n")])
    await ex.write(b"live out\n")
    assert not follower.ended.is_set()
    await ex.finish()
    assert parse_chunks(await follower.end()) == [
        ("stdout", 0, b"stored\n"),
        ("stderr", 7, b"live err\n"),
        ("stdout", 16, b"live out\n"),
    ]
