-- Files and artifacts: the bytes live in JetStream's object stores; a run's row lists what its
-- `artifacts` patterns kept (path, size, sha256), from its `run.finished`, for the artifacts API.

ALTER TABLE runs ADD COLUMN IF NOT EXISTS artifacts jsonb NOT NULL DEFAULT '[]';
-- A saved command's files (names in the files store) and artifact patterns, given to each of its runs.
ALTER TABLE commands ADD COLUMN IF NOT EXISTS files jsonb NOT NULL DEFAULT '[]';
ALTER TABLE commands ADD COLUMN IF NOT EXISTS artifacts jsonb NOT NULL DEFAULT '[]';
