-- API tokens as the listing shows them: never the token, never its digest (gateways look tokens up in
-- their own table, folded from the stream). A revoked token keeps its row, with who revoked it and when.
CREATE TABLE IF NOT EXISTS tokens (
    id          uuid PRIMARY KEY,
    role        text NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL DEFAULT '',
    revoked_at  timestamptz,
    revoked_by  text NOT NULL DEFAULT ''
);

-- Who asked for a run and who stopped it: the names of the tokens, as the events carry them.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS requested_by text NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN IF NOT EXISTS stopped_by text NOT NULL DEFAULT '';
