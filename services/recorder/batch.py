"""Applying one batch of stream messages: all of it, with the new position, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from scriptbus.recorder.feed import StreamMessage
from scriptbus.recorder.position import POSITION_NAME, lock_position, store_position
from scriptbus.recorder.projections import BatchWrites, project_message

log = logging.getLogger(__name__)

# Checks whether stream sequences [first, end) are all gone from the stream (deleted, aged out).
GapCheck = Callable[[int, int], Awaitable[bool]]

# Errors caused by one message's content rather than by the database being unreachable: the batch is
# retried message by message so that only the culprit is skipped.
_CONTENT_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    KeyError,
)


@dataclass(frozen=True, slots=True)
class BatchResult:
    position: int  # last applied sequence after the batch
    applied: int  # messages applied (skipped duplicates not counted)
    # Set when the feed must start again from this sequence: it skipped messages that still exist,
    # or it is behind the stored position.
    restart_from: int | None = None


async def apply_batch(
    conn: asyncpg.Connection,
    msgs: Sequence[StreamMessage],
    gap_check: GapCheck,
    *,
    position_name: str = POSITION_NAME,
) -> BatchResult:
    """Project `msgs` (in stream order) and store the new position `position_name`, exactly once.

    Messages at or below the stored position are skipped, so a batch delivered again after a crash
    changes nothing. A jump in sequence numbers stops the batch there unless `gap_check` says the
    missing messages no longer exist in the stream.
    """
    try:
        return await _apply(conn, msgs, gap_check, position_name, careful=False)
    except _CONTENT_ERRORS as exc:
        log.warning("batch of %d failed (%s); applying it message by message", len(msgs), exc)
        return await _apply(conn, msgs, gap_check, position_name, careful=True)


async def _apply(
    conn: asyncpg.Connection,
    msgs: Sequence[StreamMessage],
    gap_check: GapCheck,
    position_name: str,
    *,
    careful: bool,
) -> BatchResult:
    async with conn.transaction():
        last = await lock_position(conn, position_name)
        accepted: list[StreamMessage] = []
        restart_from: int | None = None
        expected = last + 1
        for m in msgs:
            if m.seq < expected:
                continue
            if m.seq > expected and not await gap_check(expected, m.seq):
                log.warning("seq %d follows %d: messages in between were not delivered", m.seq, expected - 1)
                restart_from = expected
                break
            accepted.append(m)
            expected = m.seq + 1
        if not accepted:
            if msgs and msgs[-1].seq < last:
                # Another recorder (or an earlier life of this one) is ahead: skip the rest quickly.
                restart_from = last + 1
            return BatchResult(position=last, applied=0, restart_from=restart_from)
        if careful:
            await _project_one_by_one(conn, accepted)
        else:
            writes = BatchWrites()
            for m in accepted:
                await project_message(conn, m, writes)
            await writes.flush(conn)
        position = accepted[-1].seq
        await store_position(conn, position, position_name)
    return BatchResult(position=position, applied=len(accepted), restart_from=restart_from)


async def _project_one_by_one(conn: asyncpg.Connection, msgs: Sequence[StreamMessage]) -> None:
    for m in msgs:
        try:
            async with conn.transaction():  # a savepoint: a failure undoes this message only
                writes = BatchWrites()
                await project_message(conn, m, writes)
                await writes.flush(conn)
        except _CONTENT_ERRORS as exc:
            log.error("seq %d on %s cannot be projected, skipped: %r", m.seq, m.subject, exc)
