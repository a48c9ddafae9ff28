"""Counters that only grow, for the gateway's /metrics: `run_stats (name, label, value)`.

Rows: ('requested', <pool>), ('started', <host>), ('finished', <status>), ('output_bytes', ''),
('duration_sum', ''), ('duration_count', ''), and the run-duration histogram
('duration_bucket', <le>) with cumulative counts, le in DURATION_BUCKETS_S written as `f"{le:g}"`
(e.g. '0.1', '60', '3600') plus '+Inf'. Deleting a run does not lower any of them.

A batch adds up its increments in memory and writes them with the statement that stores its position, so they are
exactly-once like everything else the batch changes.
"""

from __future__ import annotations

import asyncpg

DURATION_BUCKETS_S: tuple[float, ...] = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class RunStats:
    """Increments collected during one batch."""

    def __init__(self) -> None:
        self._add: dict[tuple[str, str], float] = {}

    def count(self, name: str, label: str = "", by: float = 1) -> None:
        self._add[(name, label)] = self._add.get((name, label), 0.0) + by

    def observe_duration(self, seconds: float) -> None:
        self.count("duration_sum", by=seconds)
        self.count("duration_count")
        for le in DURATION_BUCKETS_S:
            if seconds <= le:
                self.count("duration_bucket", f"{le:g}")
        self.count("duration_bucket", "+Inf")

    def take(self) -> tuple[list[str], list[str], list[float]]:
        """The collected increments as (names, labels, values) for `ADD_STATS_SQL`; empties them."""
        items, self._add = sorted(self._add.items()), {}
        return [name for (name, _), _ in items], [label for (_, label), _ in items], [v for _, v in items]

    async def flush(self, conn: asyncpg.Connection) -> None:
        """Add the collected increments to `run_stats` (inside the batch's transaction)."""
        if self._add:
            await conn.execute(ADD_STATS_SQL, *self.take())


# $1 names, $2 labels, $3 values; also part of the statement that stores a batch's position.
ADD_STATS_SQL = """INSERT INTO run_stats (name, label, value)
               SELECT * FROM unnest($1::text[], $2::text[], $3::double precision[])
               ON CONFLICT (name, label) DO UPDATE SET value = run_stats.value + EXCLUDED.value"""
