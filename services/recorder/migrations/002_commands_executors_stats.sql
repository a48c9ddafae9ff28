-- Saved commands, the fleet, and monotonic counters for /metrics. Only the recorder writes here.

CREATE TABLE IF NOT EXISTS commands (
    id            uuid PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    description   text NOT NULL DEFAULT '',
    script        text NOT NULL,
    env           jsonb NOT NULL DEFAULT '{}',
    timeout_s     double precision,
    stop_grace_s  double precision NOT NULL DEFAULT 5,
    pool          text NOT NULL DEFAULT 'default',
    version       integer NOT NULL DEFAULT 1,      -- 1 on create, +1 on every update
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- The latest word from each executor host (projected from the executors stream, position name 'executors').
CREATE TABLE IF NOT EXISTS executors (
    host             text PRIMARY KEY,
    executor_id      text NOT NULL,
    pools            jsonb NOT NULL DEFAULT '[]',
    labels           jsonb NOT NULL DEFAULT '{}',
    version          text NOT NULL DEFAULT '',
    capacity         integer NOT NULL DEFAULT 0,
    running          integer NOT NULL DEFAULT 0,
    running_run_ids  jsonb NOT NULL DEFAULT '[]',
    interval_s       double precision NOT NULL DEFAULT 2,
    started_at       timestamptz,
    last_heartbeat   timestamptz,
    state            text NOT NULL                -- 'online' | 'draining' | 'stopped' | 'lost'
);

-- Counters that only grow (deleting a run does not lower them): Prometheus counters and the run
-- duration histogram. (name, label) e.g. ('requested', '<pool>'), ('started', '<host>'),
-- ('finished', '<status>'), ('output_bytes', ''), ('duration_bucket', '<le>'), ('duration_sum', ''),
-- ('duration_count', '').
CREATE TABLE IF NOT EXISTS run_stats (
    name   text NOT NULL,
    label  text NOT NULL DEFAULT '',
    value  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (name, label)
);

CREATE INDEX IF NOT EXISTS runs_command_idx ON runs (command_id, created_at DESC) WHERE command_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_host_idx ON runs (host, created_at DESC);
CREATE INDEX IF NOT EXISTS runs_pool_idx ON runs (pool, created_at DESC);
CREATE INDEX IF NOT EXISTS runs_queued_idx ON runs (pool, target_host) WHERE status = 'queued';
