-- Secrets as the API lists them: names and who set them, never a value (values live sealed in the
-- secrets bucket, which only executors can open). Runs and commands show the names of their secrets.

CREATE TABLE IF NOT EXISTS secrets (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    set_at      timestamptz NOT NULL,
    set_by      text NOT NULL DEFAULT '',
    version     integer NOT NULL DEFAULT 1      -- 1 when first set, +1 on every replacement
);

ALTER TABLE runs ADD COLUMN IF NOT EXISTS secrets jsonb NOT NULL DEFAULT '[]';
ALTER TABLE commands ADD COLUMN IF NOT EXISTS secrets jsonb NOT NULL DEFAULT '[]';
