-- Fan-outs (one script on many hosts), projected from `<prefix>.fanouts.>`. A host's current run is
-- read by joining `runs` on `run_id`; the run rows carry their `fanout_id` too.

CREATE TABLE IF NOT EXISTS fanouts (
    id                 uuid PRIMARY KEY,
    seq                bigint NOT NULL,          -- stream sequence of fanout.requested
    status             text NOT NULL,
    script             text NOT NULL,
    command_id         uuid,
    args               jsonb NOT NULL DEFAULT '[]',
    description        text NOT NULL DEFAULT '',
    pool               text,
    labels             jsonb NOT NULL DEFAULT '{}',
    named_hosts        jsonb NOT NULL DEFAULT '[]',
    max_parallel       integer,
    max_failures       integer,
    timeout_s          double precision,
    requested_by       text NOT NULL DEFAULT '',
    round              integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL,
    stop_requested_at  timestamptz,
    stopped_by         text NOT NULL DEFAULT '',
    finished_at        timestamptz
);
CREATE INDEX IF NOT EXISTS fanouts_created_idx ON fanouts (created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS fanout_hosts (
    fanout_id  uuid NOT NULL,
    host       text NOT NULL,
    position   integer NOT NULL,                 -- the order hosts are started in
    attempt    integer NOT NULL DEFAULT 0,       -- 0: not started yet
    run_id     uuid,                             -- the latest attempt's run
    skipped    boolean NOT NULL DEFAULT false,
    run_deleted boolean NOT NULL DEFAULT false,  -- its latest run was deleted (after the fan-out finished)
    reason     text NOT NULL DEFAULT '',
    PRIMARY KEY (fanout_id, host)
);

ALTER TABLE runs ADD COLUMN IF NOT EXISTS fanout_id uuid;
CREATE INDEX IF NOT EXISTS runs_fanout_idx ON runs (fanout_id) WHERE fanout_id IS NOT NULL;
