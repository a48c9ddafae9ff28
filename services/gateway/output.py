"""A run's output: what is stored, and (with `follow`) what arrives live until the run ends, as pieces that
say which stream wrote them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from scriptbus.events.output import OutputChunk, OutputStream
from scriptbus.events.publishing import run_ending_subjects
from scriptbus.events.statuses import TERMINAL_STATUSES
from scriptbus.gateway import readmodels
from scriptbus.gateway.errors import BusUnavailable, RunNotFound, db_errors
from scriptbus.gateway.readmodels import OutputPiece
from scriptbus.gateway.run_messages import RunMessages
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)


async def open_pieces(
    gw: Gateway, run_id: str, offset: int, stream: OutputStream | None, follow: bool
) -> AsyncIterator[OutputPiece]:
    """Check that the run exists, then return an iterator of its output from byte `offset` on
    (`offset` counts only `stream`'s bytes when a stream is selected), as pieces that say which stream
    their bytes came from and where they start.

    With `follow`, the iterator goes on with live bytes until the run finishes or is deleted."""
    with db_errors():
        # Read the position before the status: if the run's finish is at or below this position, the
        # status read afterwards shows it; otherwise the live part, started past it, sees the finish.
        position = await readmodels.projection_position(gw.pool) if follow else 0
        status = await readmodels.get_status(gw.pool, run_id)
    if status is None:
        raise RunNotFound(run_id)
    if not follow or status in TERMINAL_STATUSES:
        stored = readmodels.read_output(gw.pool, run_id, offset, stream)
        # Read the first page now: a failing database is then a 503, not a 200 cut short.
        with db_errors():
            first = await anext(stored, None)
        return _prepend(first, stored)
    if not gw.nc.is_connected:
        raise BusUnavailable("NATS is not connected; live output cannot be followed right now")
    return _follow(gw, run_id, offset, stream, position)


async def tail_offset(gw: Gateway, run_id: str, stream: OutputStream | None, tail: int) -> int:
    """Where the last `tail` bytes of the stored output (of `stream`, when given) start."""
    with db_errors():
        size = await readmodels.output_size(gw.pool, run_id, stream)
    return max(0, size - tail)


async def limited(body: AsyncIterator[OutputPiece], limit: int) -> AsyncIterator[OutputPiece]:
    """`body` cut after `limit` bytes (a page of a long log: the console loads earlier parts on demand)."""
    left = limit
    try:
        async for piece in body:
            yield piece if len(piece.data) <= left else OutputPiece(piece.stream, piece.start, piece.data[:left])
            left -= len(piece.data)
            if left <= 0:
                return
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


async def as_bytes(pieces: AsyncIterator[OutputPiece]) -> AsyncIterator[bytes]:
    """The pieces' bytes alone: the exact output."""
    try:
        async for piece in pieces:
            yield piece.data
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()


async def _prepend(first: OutputPiece | None, rest: AsyncIterator[OutputPiece]) -> AsyncIterator[OutputPiece]:
    if first is not None:
        yield first
    async for piece in rest:
        yield piece


async def _follow(
    gw: Gateway, run_id: str, offset: int, stream: OutputStream | None, position: int
) -> AsyncIterator[OutputPiece]:
    # `sent` is the next byte the client expects. Stored and live parts overlap (each chunk may be in
    # both); comparing offsets makes the join exact: no gap, no byte twice.
    sent = offset
    async for piece in readmodels.read_output(gw.pool, run_id, sent, stream):
        yield piece
        sent = piece.end

    s = gw.subjects
    # Everything at or below `position` is already in PostgreSQL; start the live part just after it.
    messages = await RunMessages.open(gw, run_id, position + 1, "follow the run's output")
    output_subject = s.run_output(run_id)
    ending = run_ending_subjects(s, run_id)
    async with messages:
        async for msg in messages:
            if msg is None:
                continue
            if msg.subject in ending:
                return
            if msg.subject != output_subject:
                continue
            chunk = OutputChunk.from_message(run_id, msg.data, msg.headers)
            if stream is not None and chunk.stream != stream:
                continue
            start = chunk.offset if stream is None else chunk.stream_offset
            end = start + len(chunk.data)
            if end <= sent:
                continue
            cut = max(0, sent - start)
            yield OutputPiece(chunk.stream, start + cut, chunk.data[cut:])
            sent = end
