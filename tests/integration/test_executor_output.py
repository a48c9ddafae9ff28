"""Pipe reads into published chunks on real JetStream: a quiet run's bytes go out at once, a flood is
gathered into big chunks while an ack is in flight, and no byte is lost, reordered or mixed up."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

from scriptbus.events import OutputChunk, OutputStream, new_id
from scriptbus.executor.masking import OutputMask
from scriptbus.executor.output import CHUNK_SIZE, OutputPublisher, Pump, RunOutput
from scriptbus.executor.process import spawn
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually

OUT, ERR = OutputStream.STDOUT, OutputStream.STDERR


class Stored:
    """The run's chunks as JetStream holds them, followed live."""

    def __init__(self) -> None:
        self.chunks: list[OutputChunk] = []

    def data(self, stream: OutputStream | None = None) -> bytes:
        return b"".join(c.data for c in self.chunks if stream is None or c.stream is stream)

    def assert_consistent(self) -> None:
        offset = 0
        per_stream = {OUT: 0, ERR: 0}
        for chunk in self.chunks:
            assert chunk.offset == offset
            assert chunk.stream_offset == per_stream[chunk.stream]
            assert 0 < len(chunk.data) <= CHUNK_SIZE
            offset += len(chunk.data)
            per_stream[chunk.stream] += len(chunk.data)


async def run_output(bus: Bus) -> tuple[RunOutput, Stored]:
    nc, js, s = bus
    run_id = new_id()
    stored = Stored()

    async def take(msg) -> None:  # type: ignore[no-untyped-def]
        stored.chunks.append(OutputChunk.from_message(run_id, msg.data, msg.headers))

    await js.subscribe(s.run_output(run_id), ordered_consumer=True, cb=take)
    out = OutputPublisher(nc, js).run_output(s.run_output(run_id), run_id, "h", 1 << 30)
    return out, stored


def pump(reader: asyncio.StreamReader, stream: OutputStream, out: RunOutput, mask: OutputMask | None = None) -> Pump:
    p = Pump(reader, stream, out, mask)
    p.start()
    return p


async def test_a_quiet_runs_partial_line_goes_out_at_once(bus: Bus) -> None:
    out, stored = await run_output(bus)
    reader = asyncio.StreamReader()
    p = pump(reader, OUT, out)
    reader.feed_data(b"no newline, ")
    await eventually(lambda: stored.data() == b"no newline, ", 5.0, interval=0.001, what="the partial line")
    reader.feed_data(b"and then one\n")
    await eventually(lambda: stored.data() == b"no newline, and then one\n", 5.0, interval=0.001, what="the line")
    reader.feed_eof()
    await asyncio.wait_for(p.task, 5)  # type: ignore[arg-type]
    await out.drain()
    assert len(stored.chunks) == 2


async def test_a_flood_of_short_lines_is_gathered_into_big_chunks(bus: Bus) -> None:
    out, stored = await run_output(bus)
    reader = asyncio.StreamReader(limit=CHUNK_SIZE)
    p = pump(reader, OUT, out)
    lines = [b"%06d %s\n" % (i, b"x" * 92) for i in range(20_000)]
    for line in lines:
        reader.feed_data(line)
        await asyncio.sleep(0)  # one read per line, as from a script printing line by line
    reader.feed_eof()
    await asyncio.wait_for(p.task, 30)  # type: ignore[arg-type]
    await out.drain()
    await eventually(lambda: len(stored.data()) == len(lines) * 100, 10.0, what="every byte stored")
    assert stored.data() == b"".join(lines)
    stored.assert_consistent()
    # Published line by line this would be 20,000 messages.
    assert len(stored.chunks) <= len(lines) // 20, len(stored.chunks)


async def test_chunks_are_at_most_64k_and_eof_flushes(bus: Bus) -> None:
    out, stored = await run_output(bus)
    reader = asyncio.StreamReader(limit=CHUNK_SIZE)
    p = pump(reader, OUT, out)
    data = bytes(range(256)) * (CHUNK_SIZE * 3 // 256) + b"tail"
    reader.feed_data(data)
    reader.feed_eof()
    await asyncio.wait_for(p.task, 5)  # type: ignore[arg-type]
    await out.drain()
    await eventually(lambda: stored.data() == data, 10.0, what="every byte stored")
    stored.assert_consistent()
    assert max(len(c.data) for c in stored.chunks) == CHUNK_SIZE


async def test_stdout_and_stderr_stay_apart_and_in_read_order(bus: Bus) -> None:
    out, stored = await run_output(bus)
    out_reader, err_reader = asyncio.StreamReader(), asyncio.StreamReader()
    pumps = [pump(out_reader, OUT, out), pump(err_reader, ERR, out)]
    expected = {OUT: bytearray(), ERR: bytearray()}
    for i in range(3000):
        stream, reader = (OUT, out_reader) if i % 3 else (ERR, err_reader)
        line = b"%s %d\n" % (stream.value.encode(), i)
        reader.feed_data(line)
        expected[stream] += line
        await asyncio.sleep(0)
    out_reader.feed_eof()
    err_reader.feed_eof()
    await asyncio.gather(*(p.task for p in pumps if p.task is not None))
    await out.drain()
    total = len(expected[OUT]) + len(expected[ERR])
    await eventually(lambda: len(stored.data()) == total, 10.0, what="every byte stored")
    assert stored.data(OUT) == expected[OUT]
    assert stored.data(ERR) == expected[ERR]
    stored.assert_consistent()


async def test_a_secret_split_across_reads_is_masked_while_coalescing(bus: Bus) -> None:
    out, stored = await run_output(bus)
    reader = asyncio.StreamReader()
    p = pump(reader, OUT, out, OutputMask(["hunter2-secret"]))
    expected = bytearray()
    for i in range(500):
        reader.feed_data(b"line %d hunter" % i)
        await asyncio.sleep(0)
        reader.feed_data(b"2-sec")
        await asyncio.sleep(0)
        reader.feed_data(b"ret end\n")
        await asyncio.sleep(0)
        expected += b"line %d *** end\n" % i
    reader.feed_data(b"last hunter2")  # only the start of the value: shown at EOF
    reader.feed_eof()
    expected += b"last hunter2"
    await asyncio.wait_for(p.task, 10)  # type: ignore[arg-type]
    await out.drain()
    await eventually(lambda: len(stored.data()) == len(expected), 10.0, what="every byte stored")
    assert stored.data() == expected
    assert b"hunter2-secret" not in stored.data()


async def test_abandon_ends_a_pump_waiting_on_a_pipe_that_stays_open(bus: Bus) -> None:
    out, stored = await run_output(bus)
    reader = asyncio.StreamReader()
    p = pump(reader, OUT, out)
    reader.feed_data(b"held")
    await eventually(lambda: stored.data() == b"held", 5.0, interval=0.001, what="the bytes")
    assert p.abandon()
    await asyncio.wait_for(p.task, 5)  # type: ignore[arg-type]
    await out.drain()
    assert stored.data() == b"held"


async def test_abandon_keeps_the_bytes_that_arrived_with_it(bus: Bus) -> None:
    # The executor was descheduled: the last bytes and the decision to stop waiting come in one tick.
    out, stored = await run_output(bus)
    reader = asyncio.StreamReader()
    p = pump(reader, OUT, out)
    await asyncio.sleep(0.01)  # the pump waits on the pipe
    reader.feed_data(b"the last line\n")
    assert p.abandon()
    await asyncio.wait_for(p.task, 5)  # type: ignore[arg-type]
    await out.drain()
    await eventually(lambda: stored.data() == b"the last line\n", 5.0, what="the last line stored")
    assert not p.abandon()


async def test_closing_a_held_pipe_keeps_what_it_already_holds(tmp_path: Path) -> None:
    # A process outside the run keeps the pipe open, and the pipe is full of what the run wrote before
    # it ended (more than the reader takes in before it pauses): closing our end reads all of it first.
    total = 600_000
    proc = await spawn(
        shutil.which("bash") or "/bin/bash", f"head -c {total} /dev/zero; exec sleep 60", [], {}, tmp_path
    )
    try:
        assert proc.stdout is not None
        await asyncio.sleep(0.5)  # written: most of it in the pipe, the reader paused at its limit
        proc.close_pipe(0)
        got = await asyncio.wait_for(proc.stdout.read(), 10)
        assert len(got) == total
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
