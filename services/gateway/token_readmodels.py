"""Tokens as the recorder projects them (without the token or its digest), for the listing."""

from __future__ import annotations

import asyncpg

from scriptbus.gateway.token_schemas import Token

_COLUMNS = "id::text AS id, role, name, created_at, created_by, revoked_at, revoked_by"


async def list_tokens(pool: asyncpg.Pool, include_revoked: bool) -> list[Token]:
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM tokens WHERE $1 OR revoked_at IS NULL ORDER BY created_at, id", include_revoked
    )
    return [Token(**dict(row.items())) for row in rows]


async def get_token(pool: asyncpg.Pool, token_id: str) -> Token | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM tokens WHERE id = $1::uuid", token_id)
    return None if row is None else Token(**dict(row.items()))
