"""Which secrets are set, as the read model knows them (names and who set them, never values), and whether
a run or a saved command may use the secrets it names."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, Field

from scriptbus.gateway.errors import db_errors, invalid_input
from scriptbus.gateway.state import Gateway


class Secret(BaseModel):
    """A secret as the API shows it: that it exists, since when and who set it; never its value."""

    name: str
    set_at: datetime = Field(description="When its value was last set.")
    set_by: str = Field(description="Who set it last (the token's name).")
    created_at: datetime = Field(description="When it was first set.")
    version: int = Field(description="1 when first set, one more on every replacement.")


class SecretList(BaseModel):
    items: list[Secret]


_COLUMNS = "name, set_at, set_by, created_at, version"


async def get_secret(pool: asyncpg.Pool, name: str) -> Secret | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM secrets WHERE name = $1", name)
    return None if row is None else Secret(**dict(row.items()))


async def list_secrets(pool: asyncpg.Pool) -> list[Secret]:
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM secrets ORDER BY name")
    return [Secret(**dict(r.items())) for r in rows]


async def check_usable(gw: Gateway, names: list[str], env: dict[str, str]) -> None:
    """A 422 naming the secrets unless every one of `names` is set and none is also a variable of `env`
    (the script would get one of two values, and which one would be a surprise)."""
    if not names:
        return
    clashing = [name for name in names if name in env]
    if clashing:
        raise invalid_input(
            ("body", "secrets"),
            f"Value error, {clashing} also set in env: a variable comes from `env` or from a secret, not both",
            clashing,
        )
    with db_errors():
        rows = await gw.pool.fetch("SELECT name FROM secrets WHERE name = ANY($1::text[])", names)
    known = {row["name"] for row in rows}
    missing = [name for name in names if name not in known]
    if missing:
        raise invalid_input(
            ("body", "secrets"),
            f"Value error, secret(s) {missing} not set: an admin sets one with PUT /api/v1/secrets/{{name}} "
            "(`scriptbus secrets set NAME`)",
            missing,
        )
