-- Deleted runs whose messages are still to be purged from the events stream. The row is written in the
-- same transaction as the deletion and removed once the stream holds nothing of the run but its
-- `run.deleted` (at deleted_seq), so a recorder that dies in between purges on its next start.
CREATE TABLE IF NOT EXISTS run_purges (
    run_id       uuid PRIMARY KEY,
    deleted_seq  bigint NOT NULL
);
