"""The recorder: the only writer of PostgreSQL. It projects the streams into the read models.

- `migrations.py` applies `migrations/*.sql` once each, under an advisory lock.
- `worker.py` runs one loop per stream: the events stream (runs, output, commands; position `runs`)
  and the executors stream (the fleet; position `executors`).
- `feed.py` reads a stream from `projection_position.last_seq + 1` with an ephemeral pull consumer
  (PostgreSQL holds the position), in batches bounded by count and bytes, fetching ahead.
- `batch.py` applies a batch and the new position in one transaction, skipping what was applied,
  stopping at a jump in sequence numbers unless the missing messages were deleted. The loop applies
  from the position it knows; `position.store_position` moves it by compare-and-set in the same
  statement as the counters and the NOTIFY (a lone event: BEGIN, its projection, that, COMMIT).
- `projections.py` holds one plain function per event type (those of workflow definitions and workflow
  runs in `workflow_projections.py`); `run_requests.py` inserts a batch's new runs with one statement;
  `run_output.py` writes a batch's output chunks with one COPY; `run_stats.py` adds up the batch's
  counters for /metrics; `values.py` holds the conversions of event values they all share.
- `purges.py`: after a commit that deleted runs, their messages are purged from the events stream.
- After each commit on the events stream: `NOTIFY scriptbus_position, '<last_seq>'`.
  `position.projection_lag` reports how far behind the events stream the read models are.

`scriptbus recorder [--rebuild] [--exit-when-caught-up]`; settings in `settings.py`.
"""
