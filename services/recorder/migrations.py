"""Schema migrations: the `migrations/*.sql` files, applied in name order, once each.

Applied versions are recorded in `schema_migrations`. A PostgreSQL advisory lock serialises recorders
that start at the same time, and all pending files are applied in one transaction, so a reader sees
either the old schema or the whole new one.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any constant works as long as nothing else on the database uses it: "scriptbus" as a 63-bit integer.
MIGRATIONS_LOCK_KEY = 0x73637269707462

_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every migration shipped with the package, in the order they apply."""
    folder = resources.files("scriptbus.recorder").joinpath("migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def read_model_tables() -> list[str]:
    """Every table the migrations create, in reverse order of creation (safe to drop in that order)."""
    tables: list[str] = []
    for _, sql in migration_files():
        for name in _CREATE_TABLE.findall(sql):
            if name not in tables:
                tables.append(name)
    return tables[::-1]


async def apply_migrations(conn: asyncpg.Connection, *, rebuild: bool = False) -> list[str]:
    """Apply the pending migrations; returns the versions applied now.

    With `rebuild`, first drop every read-model table and the bookkeeping, so the schema is created
    afresh (in the same transaction: readers never see the tables missing).
    """
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK_KEY)
    try:
        async with conn.transaction():
            if rebuild:
                for table in read_model_tables():
                    await conn.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
                await conn.execute("DROP TABLE IF EXISTS schema_migrations")
                log.info("dropped the read models for a rebuild")
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    text PRIMARY KEY,
                       applied_at timestamptz NOT NULL DEFAULT now()
                   )"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied: list[str] = []
            for version, sql in migration_files():
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
                log.info("applied migration %s", version)
            return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK_KEY)
