-- Workflow definitions and workflow runs (seed 004), projected from `<prefix>.workflows.>` and
-- `<prefix>.wfruns.>`, and the step runs' own run events.

CREATE TABLE IF NOT EXISTS projects (
    name        text PRIMARY KEY,
    id          uuid NOT NULL,
    seed_id     integer,                  -- seed 004's `id` of the project
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- The current definition of every workflow; `seq` of its first definition keeps the project's order.
CREATE TABLE IF NOT EXISTS workflows (
    project     text NOT NULL,
    name        text NOT NULL,
    id          uuid NOT NULL,
    version     integer NOT NULL,
    seed_id     integer,
    settings    jsonb NOT NULL DEFAULT '{}',
    steps       jsonb NOT NULL DEFAULT '[]',  -- StepSpec objects, by place
    seq         bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    defined_by  text NOT NULL DEFAULT '',
    PRIMARY KEY (project, name)
);

-- Every version ever defined: runs name the version they run.
CREATE TABLE IF NOT EXISTS workflow_versions (
    workflow_id  uuid NOT NULL,
    version      integer NOT NULL,
    project      text NOT NULL,
    name         text NOT NULL,
    seed_id      integer,
    settings     jsonb NOT NULL DEFAULT '{}',
    steps        jsonb NOT NULL DEFAULT '[]',
    defined_at   timestamptz NOT NULL,
    defined_by   text NOT NULL DEFAULT '',
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE IF NOT EXISTS workflow_runs (
    id                 uuid PRIMARY KEY,
    seq                bigint NOT NULL,          -- stream sequence of wfrun.requested
    project            text NOT NULL,
    workflow           text NOT NULL,
    workflow_id        uuid NOT NULL,
    version            integer NOT NULL,
    status             text NOT NULL,
    task               text,
    requested_by       text NOT NULL DEFAULT '',
    retry_of           uuid,
    kept_steps         jsonb NOT NULL DEFAULT '{}',
    failed_step        text,
    reason             text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL,
    started_at         timestamptz,
    stop_requested_at  timestamptz,
    finished_at        timestamptz
);
CREATE INDEX IF NOT EXISTS workflow_runs_created_idx ON workflow_runs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS workflow_runs_workflow_idx ON workflow_runs (project, workflow, created_at DESC);

CREATE TABLE IF NOT EXISTS workflow_run_steps (
    wfrun_id       uuid NOT NULL,
    name           text NOT NULL,
    place          integer NOT NULL,
    exec           text NOT NULL,
    spec           jsonb NOT NULL,           -- the StepSpec the run keeps, whatever the definition says now
    status         text NOT NULL,
    spad_status    text NOT NULL,            -- seed 004's name of the status
    attempt        integer NOT NULL DEFAULT 0,
    run_id         uuid,                     -- the latest attempt's run (or the kept run of a retry)
    -- [{attempt, run_id, status, exit_code, signal, survivors, started, settled, stop_issued}]
    attempts       jsonb NOT NULL DEFAULT '[]',
    next_retry_at  timestamptz,
    survivors      jsonb NOT NULL DEFAULT '[]',
    held           boolean NOT NULL DEFAULT false,
    held_at        timestamptz,
    reason         text NOT NULL DEFAULT '',
    PRIMARY KEY (wfrun_id, name)
);

-- A step run says which workflow run, step and attempt it serves.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS workflow_run_id uuid;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS workflow_step text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS attempt integer;
CREATE INDEX IF NOT EXISTS runs_workflow_run_idx ON runs (workflow_run_id, created_at DESC) WHERE workflow_run_id IS NOT NULL;
