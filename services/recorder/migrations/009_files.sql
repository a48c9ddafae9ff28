-- Files and artifacts: the bytes live in JetStream's object stores; a run's row lists what its
-- `artifacts` patterns kept (path, size, sha256), from its `run.finished`, for the artifacts API.

ALTER TABLE runs ADD COLUMN IF NOT EXISTS artifacts jsonb NOT NULL DEFAULT '[]';
