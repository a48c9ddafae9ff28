-- Read models projected from the events stream. Only the recorder writes here.

-- The last stream sequence applied, stored in the same transaction as the rows it changed.
CREATE TABLE IF NOT EXISTS projection_position (
    name      text PRIMARY KEY,
    last_seq  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS runs (
    id                uuid PRIMARY KEY,
    seq               bigint NOT NULL,            -- stream sequence of run.requested
    status            text NOT NULL,
    script            text NOT NULL,
    args              jsonb NOT NULL DEFAULT '[]',
    env               jsonb NOT NULL DEFAULT '{}',
    description       text NOT NULL DEFAULT '',
    pool              text NOT NULL DEFAULT 'default',
    target_host       text,                       -- the host asked for, if any
    command_id        uuid,
    timeout_s         double precision,
    stop_grace_s      double precision NOT NULL DEFAULT 5,
    host              text,                       -- where it ran
    executor_id       text,
    pid               integer,
    exit_code         integer,
    signal            integer,
    reason            text NOT NULL DEFAULT '',
    output_bytes      bigint NOT NULL DEFAULT 0,  -- bytes stored in run_output
    output_truncated  boolean NOT NULL DEFAULT false,
    dropped_bytes     bigint NOT NULL DEFAULT 0,
    survivors         jsonb NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL,
    started_at        timestamptz,
    stop_requested_at timestamptz,
    finished_at       timestamptz,
    duration_s        double precision
);
CREATE INDEX IF NOT EXISTS runs_created_idx ON runs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS runs_status_idx ON runs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS runs_host_active_idx ON runs (host) WHERE status IN ('running', 'stopping');

-- Append-only output: one row per chunk, never an UPDATE of a growing blob.
CREATE TABLE IF NOT EXISTS run_output (
    run_id         uuid NOT NULL,
    "offset"       bigint NOT NULL,   -- byte offset in the run's whole output
    stream         text NOT NULL,     -- 'stdout' | 'stderr'
    stream_offset  bigint NOT NULL,   -- byte offset within that stream
    data           bytea NOT NULL,
    PRIMARY KEY (run_id, "offset")
);
