"""Deleting forgets: once a `run.deleted` is projected, every earlier message of the run (its request
with the script and env, its output, its lifecycle) is purged from the events stream.

The projection of `run.deleted` records the run in `run_purges` in the batch's transaction; after the
commit the recorder purges `<prefix>.runs.<id>.>` below the deletion's sequence and removes the row.
Purging after the commit means the read model forgets the run before the stream does, and a crash in
between leaves the row, so the purge is done on the next start; a purge that fails (NATS down) is
retried after the next deletion or restart.

The `run.deleted` itself stays as a tombstone (it holds only the run id): live readers of the run end on
it rather than waiting for an end that was purged, the gateway answers 404 for the run at once, and a
`--rebuild` replays it as a no-op. Nothing else of a deleted run is left to replay.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
from nats.js import JetStreamContext

from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.subjects import Subjects
from scriptbus.recorder.feed import StreamMessage

log = logging.getLogger(__name__)


async def record_purge(conn: asyncpg.Connection, run_id: str, deleted_seq: int) -> None:
    """Inside the transaction that projects a run's deletion (at stream sequence `deleted_seq`): remember
    to purge the run's messages before it."""
    await conn.execute(
        """INSERT INTO run_purges (run_id, deleted_seq) VALUES ($1::uuid, $2)
           ON CONFLICT (run_id) DO UPDATE SET deleted_seq = GREATEST(run_purges.deleted_seq, EXCLUDED.deleted_seq)""",
        run_id,
        deleted_seq,
    )


def deletes_a_run(msgs: Sequence[StreamMessage]) -> bool:
    """True when one of `msgs` is a `run.deleted` (`<prefix>.runs.<id>.deleted`)."""
    for m in msgs:
        tokens = m.subject.split(".")
        if len(tokens) == 4 and tokens[1] == "runs" and tokens[3] == "deleted":
            return True
    return False


class RunPurger:
    """Purges the messages of the runs listed in `run_purges`, after the deletions are committed."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self._js = js
        self._subjects = subjects

    async def purge_pending(self, conn: asyncpg.Connection) -> int:
        """Purge every run still listed; returns how many were purged. NATS failures are logged and
        leave the rest listed for the next call."""
        s = self._subjects
        purged = 0
        for row in await conn.fetch("SELECT run_id::text AS run_id, deleted_seq FROM run_purges"):
            run_id: str = row["run_id"]
            deleted_seq: int = row["deleted_seq"]
            try:
                # `seq`: the messages of the filter below it, so the tombstone stays.
                await self._js.purge_stream(s.events_stream, subject=s.run_all(run_id), seq=deleted_seq)
            except BUS_ERRORS as exc:
                log.warning("could not purge the messages of deleted run %s (will retry): %r", run_id, exc)
                break
            await conn.execute(
                "DELETE FROM run_purges WHERE run_id = $1::uuid AND deleted_seq = $2", run_id, deleted_seq
            )
            purged += 1
            log.info("purged the messages of deleted run %s from %s", run_id, s.events_stream)
        return purged
