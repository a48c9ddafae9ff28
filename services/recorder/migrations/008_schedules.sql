-- Schedules as the API shows them (the scheduler itself reads only the stream), the ticks they fired,
-- and which schedule made a run or a workflow run.

CREATE TABLE IF NOT EXISTS schedules (
    id           uuid PRIMARY KEY,               -- derived from the name
    name         text NOT NULL UNIQUE,
    generation   bigint NOT NULL,                -- stream sequence of its `created`
    spec         jsonb NOT NULL,
    paused       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL,
    updated_by   text NOT NULL DEFAULT '',
    last_tick    timestamptz,
    last_outcome text,
    last_run_id  uuid,
    fired        bigint NOT NULL DEFAULT 0,
    skipped      bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS schedule_fires (
    schedule_id uuid NOT NULL,
    generation  bigint NOT NULL,
    tick        timestamptz NOT NULL,
    seq         bigint NOT NULL,
    outcome     text NOT NULL,
    run_id      uuid,
    wfrun_id    uuid,
    reason      text NOT NULL DEFAULT '',
    missed      integer NOT NULL DEFAULT 0,
    fired_at    timestamptz NOT NULL,
    PRIMARY KEY (schedule_id, generation, tick)
);

ALTER TABLE runs ADD COLUMN IF NOT EXISTS schedule_id uuid;
ALTER TABLE workflow_runs ADD COLUMN IF NOT EXISTS schedule_id uuid;
CREATE INDEX IF NOT EXISTS runs_schedule_id ON runs (schedule_id) WHERE schedule_id IS NOT NULL;
