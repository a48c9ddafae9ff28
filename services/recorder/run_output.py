"""Output chunks of a batch, written to `run_output` together with one COPY.

Row-at-a-time inserts commit a few thousand chunks a second; COPY moves bytea at close to disk speed,
so chunks are collected while a batch is projected and written in bulk.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from scriptbus.events.output import OutputChunk

_COLUMNS = ["run_id", "offset", "stream", "stream_offset", "data"]


@dataclass
class OutputBatch:
    """Chunks waiting to be written, in stream order."""

    chunks: list[OutputChunk] = field(default_factory=list)
    run_ids: set[str] = field(default_factory=set)

    def add(self, chunk: OutputChunk) -> None:
        self.chunks.append(chunk)
        self.run_ids.add(chunk.run_id)

    async def flush(self, conn: asyncpg.Connection) -> int:
        """Write the collected chunks of known runs; returns the number of bytes stored.

        Chunks of runs that do not exist (never requested, or deleted) are dropped. A chunk whose
        (run_id, offset) is already stored is skipped without failing the others.
        """
        if not self.chunks:
            return 0
        chunks, self.chunks, self.run_ids = self.chunks, [], set()
        # Parsed once per run, not per chunk: a batch of short-line output is hundreds of chunks of one run.
        known: dict[str, uuid.UUID] = {
            str(r["id"]): r["id"]
            for r in await conn.fetch(
                "SELECT id FROM runs WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in {c.run_id for c in chunks}]
            )
        }
        rows = [
            (known[c.run_id], c.offset, c.stream.value, c.stream_offset, c.data) for c in chunks if c.run_id in known
        ]
        if not rows:
            return 0
        try:
            # Fast path: straight into the table. A savepoint lets a duplicate fall back without
            # losing the rest of the batch's transaction.
            async with conn.transaction():
                await conn.copy_records_to_table("run_output", records=rows, columns=_COLUMNS)
            written = sum(len(row[4]) for row in rows)
        except asyncpg.UniqueViolationError:
            written = await _copy_skipping_duplicates(conn, rows)
        ends: dict[uuid.UUID, int] = {}
        for run_id, offset, _, _, data in rows:
            ends[run_id] = max(ends.get(run_id, 0), offset + len(data))
        await conn.execute(
            """UPDATE runs SET output_bytes = GREATEST(runs.output_bytes, v.end_offset)
               FROM unnest($1::uuid[], $2::bigint[]) AS v(id, end_offset)
               WHERE runs.id = v.id""",
            list(ends),
            list(ends.values()),
        )
        return written


async def _copy_skipping_duplicates(conn: asyncpg.Connection, rows: Sequence[tuple[object, ...]]) -> int:
    """COPY into a scratch table, then keep only rows not stored yet (the first in stream order wins);
    returns the bytes stored."""
    await conn.execute(
        """CREATE TEMP TABLE IF NOT EXISTS run_output_in (
               n bigserial, run_id uuid, "offset" bigint, stream text, stream_offset bigint, data bytea
           ) ON COMMIT DELETE ROWS"""
    )
    await conn.execute("TRUNCATE run_output_in")
    await conn.copy_records_to_table("run_output_in", records=rows, columns=_COLUMNS)
    written = await conn.fetchval(
        """WITH stored AS (
               INSERT INTO run_output (run_id, "offset", stream, stream_offset, data)
               SELECT run_id, "offset", stream, stream_offset, data FROM run_output_in ORDER BY n
               ON CONFLICT (run_id, "offset") DO NOTHING
               RETURNING length(data) AS n
           )
           SELECT coalesce(sum(n), 0) FROM stored"""
    )
    await conn.execute("TRUNCATE run_output_in")
    return int(written)
