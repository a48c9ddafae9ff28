"""Applying one batch of stream messages: all of it, with the new position, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from scriptbus.recorder.feed import StreamMessage
from scriptbus.recorder.position import POSITION_NAME, lock_position, read_position, store_position
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


class _MovedUnderUs(Exception):
    """The stored position is not the one the batch was applied from: roll it back."""


async def apply_batch(
    conn: asyncpg.Connection,
    msgs: Sequence[StreamMessage],
    gap_check: GapCheck,
    *,
    position_name: str = POSITION_NAME,
    known_position: int | None = None,
) -> BatchResult:
    """Project `msgs` (in stream order) and store the new position `position_name`, exactly once.

    Messages at or below the stored position are skipped, so a batch delivered again after a crash
    changes nothing. A jump in sequence numbers stops the batch there unless `gap_check` says the
    missing messages no longer exist in the stream.

    `known_position` is the position this caller stored last (or read): the batch is then applied
    from it without first reading and locking the stored one, and the position moves only if it is
    still that value at the end (otherwise everything is rolled back and the feed starts again from
    the stored one). Two round trips fewer per batch, the same exactly-once.
    """
    try:
        return await _apply(conn, msgs, gap_check, position_name, known_position, careful=False)
    except _CONTENT_ERRORS as exc:
        log.warning("batch of %d failed (%s); applying it message by message", len(msgs), exc)
        return await _apply(conn, msgs, gap_check, position_name, known_position, careful=True)


async def _accept(
    msgs: Sequence[StreamMessage], last: int, gap_check: GapCheck
) -> tuple[list[StreamMessage], int | None]:
    """The messages after position `last` up to any real gap, and where the feed must start again."""
    accepted: list[StreamMessage] = []
    expected = last + 1
    for m in msgs:
        if m.seq < expected:
            continue
        if m.seq > expected and not await gap_check(expected, m.seq):
            log.warning("seq %d follows %d: messages in between were not delivered", m.seq, expected - 1)
            return accepted, expected
        accepted.append(m)
        expected = m.seq + 1
    if not accepted and msgs and msgs[-1].seq < last:
        # Another recorder (or an earlier life of this one) is ahead: skip the rest quickly.
        return accepted, last + 1
    return accepted, None


async def _apply(
    conn: asyncpg.Connection,
    msgs: Sequence[StreamMessage],
    gap_check: GapCheck,
    position_name: str,
    known_position: int | None,
    *,
    careful: bool,
) -> BatchResult:
    if known_position is not None:
        accepted, restart_from = await _accept(msgs, known_position, gap_check)
        if not accepted:
            return BatchResult(position=known_position, applied=0, restart_from=restart_from)
    try:
        async with conn.transaction():
            if known_position is None:
                last = await lock_position(conn, position_name)
                accepted, restart_from = await _accept(msgs, last, gap_check)
                if not accepted:
                    return BatchResult(position=last, applied=0, restart_from=restart_from)
            writes = BatchWrites()
            if careful:
                await _project_one_by_one(conn, accepted)
            else:
                for m in accepted:
                    await project_message(conn, m, writes)
                await writes.flush_output(conn)
            position = accepted[-1].seq
            if not await store_position(conn, position, position_name, expected=known_position, stats=writes.stats):
                raise _MovedUnderUs
    except _MovedUnderUs:
        stored = await read_position(conn, position_name)
        log.warning(
            "%s: position is %d, not %s: another recorder moved it; batch rolled back",
            position_name,
            stored,
            known_position,
        )
        return BatchResult(position=stored, applied=0, restart_from=stored + 1)
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
