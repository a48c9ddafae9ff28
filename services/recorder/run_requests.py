"""New runs of a batch, inserted together with one statement.

Under load a batch holds a few runs' `run.requested`, `run.started` and `run.finished` interleaved; one
INSERT per request is a round trip each. A request is held back instead, and the held ones are inserted
together before anything that could see them is applied: an event of a held run, output (whose rows need
their run's), or any event that is not about one run. Events of other runs may be applied before a held
request that preceded them in the stream: none of their projections reads another run's row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import asyncpg

from scriptbus.events.runs import RunRequested
from scriptbus.recorder.run_stats import RunStats
from scriptbus.recorder.values import aware, strict_uuid, uuid_or_none

_INSERT = """
INSERT INTO runs (id, seq, status, script, args, env, description, pool, target_host, command_id, timeout_s,
                  stop_grace_s, created_at, workflow_run_id, workflow_step, attempt, secrets, requested_by,
                  fanout_id, schedule_id)
SELECT id, seq, 'queued', script, args::jsonb, env::jsonb, description, pool, target_host, command_id, timeout_s,
       stop_grace_s, created_at, workflow_run_id, workflow_step, attempt, secrets::jsonb, requested_by,
       fanout_id, schedule_id
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::uuid[], $10::double precision[], $11::double precision[], $12::timestamptz[], $13::uuid[],
            $14::text[], $15::integer[], $16::text[], $17::text[], $18::uuid[], $19::uuid[])
     AS r(id, seq, script, args, env, description, pool, target_host, command_id, timeout_s, stop_grace_s,
          created_at, workflow_run_id, workflow_step, attempt, secrets, requested_by, fanout_id, schedule_id)
ON CONFLICT (id) DO NOTHING
RETURNING pool"""


@dataclass
class RequestBatch:
    """`run.requested` events held back, in stream order."""

    held: list[tuple[RunRequested, int]] = field(default_factory=list)
    run_ids: set[str] = field(default_factory=set)

    def add(self, event: RunRequested, seq: int) -> None:
        if event.run_id in self.run_ids:
            return  # the first request of a run wins (ON CONFLICT DO NOTHING) anyway
        self.held.append((event, seq))
        self.run_ids.add(event.run_id)

    async def flush(self, conn: asyncpg.Connection, stats: RunStats) -> None:
        """Insert the held runs (those not stored yet), counting each new one as requested in its pool."""
        if not self.held:
            return
        held, self.held, self.run_ids = self.held, [], set()
        rows = [_row(e, seq) for e, seq in held]
        columns = [list(column) for column in zip(*rows, strict=True)]
        for inserted in await conn.fetch(_INSERT, *columns):
            stats.count("requested", inserted["pool"])


def _row(e: RunRequested, seq: int) -> tuple[object, ...]:
    """The run's values in `_INSERT`'s column order ($1..$19)."""
    return (
        uuid.UUID(e.run_id),
        seq,
        e.script,
        json.dumps(e.args),
        json.dumps(e.env),
        e.description,
        e.pool,
        e.host,
        uuid_or_none(e.command_id),
        e.timeout_s,
        e.stop_grace_s,
        aware(e.occurred_at),
        uuid_or_none(e.workflow_run_id),
        e.workflow_step,
        e.attempt,
        json.dumps(e.secrets),
        e.requested_by,
        uuid_or_none(e.fanout_id),
        strict_uuid(e.schedule_id),
    )
