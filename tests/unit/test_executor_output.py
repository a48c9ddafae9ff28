"""Pipe reads into chunks: flushed on newline, at 64 KiB, and on a short timer for partial lines."""

from __future__ import annotations

import asyncio
import time

from scriptbus.events import OutputStream
from scriptbus.executor.output import CHUNK_SIZE, Pump
from tests.helpers.waiting import eventually

OUT, ERR = OutputStream.STDOUT, OutputStream.STDERR


class Recorder:
    """Stands in for a run's output: keeps each write and when it came."""

    run_id = "r"

    def __init__(self) -> None:
        self.writes: list[tuple[float, list[tuple[OutputStream, bytes]]]] = []

    async def write(self, pieces: list[tuple[OutputStream, bytes]]) -> None:
        self.writes.append((time.monotonic(), pieces))

    @property
    def pieces(self) -> list[tuple[OutputStream, bytes]]:
        return [p for _, w in self.writes for p in w]


def pump(reader: asyncio.StreamReader, stream: OutputStream, rec: Recorder) -> Pump:
    p = Pump(reader, stream, rec)  # type: ignore[arg-type]
    p.start()
    return p


async def test_a_line_flushes_without_waiting_for_the_timer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("scriptbus.executor.output.FLUSH_AFTER_S", 30.0)
    rec, reader = Recorder(), asyncio.StreamReader()
    p = pump(reader, OUT, rec)
    reader.feed_data(b"no newline yet")
    await asyncio.sleep(0.1)
    assert rec.pieces == []
    reader.feed_data(b", now one\nand a tail")
    await eventually(lambda: rec.pieces, 2.0, interval=0.001, what="a piece")
    assert rec.pieces == [(OUT, b"no newline yet, now one\nand a tail")]
    reader.feed_eof()
    await asyncio.wait_for(p.task, 1)  # type: ignore[arg-type]


async def test_a_partial_line_flushes_on_the_timer() -> None:
    rec, reader = Recorder(), asyncio.StreamReader()
    p = pump(reader, OUT, rec)
    t0 = time.monotonic()
    reader.feed_data(b"o")
    reader.feed_data(b"...")
    await eventually(lambda: rec.pieces, 2.0, interval=0.001, what="a piece")
    assert rec.pieces == [(OUT, b"o...")]
    assert rec.writes[0][0] - t0 >= 0.015
    reader.feed_eof()
    await asyncio.wait_for(p.task, 1)  # type: ignore[arg-type]


async def test_chunks_are_at_most_64k_and_eof_flushes() -> None:
    rec, reader = Recorder(), asyncio.StreamReader(limit=CHUNK_SIZE)
    p = pump(reader, OUT, rec)
    reader.feed_data(b"x" * (CHUNK_SIZE * 2 + 10))
    reader.feed_eof()
    await asyncio.wait_for(p.task, 1)  # type: ignore[arg-type]
    sizes = [len(d) for _, d in rec.pieces]
    assert sum(sizes) == CHUNK_SIZE * 2 + 10
    assert max(sizes) == CHUNK_SIZE


async def test_the_other_pipes_buffer_goes_first() -> None:
    rec = Recorder()
    out_reader, err_reader = asyncio.StreamReader(), asyncio.StreamReader()
    out, err = pump(out_reader, OUT, rec), pump(err_reader, ERR, rec)
    out.sibling, err.sibling = err, out
    out_reader.feed_data(b"partial")
    await asyncio.sleep(0.002)
    err_reader.feed_data(b"error line\n")
    await eventually(lambda: rec.pieces, 2.0, interval=0.001, what="a piece")
    assert rec.writes[0][1] == [(OUT, b"partial"), (ERR, b"error line\n")]
    out_reader.feed_eof()
    err_reader.feed_eof()
    await asyncio.gather(out.task, err.task)  # type: ignore[arg-type]


async def test_abandon_ends_a_pump_waiting_on_a_pipe_that_stays_open() -> None:
    rec, reader = Recorder(), asyncio.StreamReader()
    p = pump(reader, OUT, rec)
    reader.feed_data(b"held")
    await asyncio.sleep(0.001)
    assert p.abandon()
    await asyncio.wait_for(p.task, 1)  # type: ignore[arg-type]
    assert rec.pieces == [(OUT, b"held")]
