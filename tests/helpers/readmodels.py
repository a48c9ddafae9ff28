"""Reading the recorder's tables whole, to compare read models before and after a rebuild."""

from __future__ import annotations

import asyncpg

from scriptbus.recorder.migrations import read_model_tables


async def dump_read_models(url: str) -> dict[str, list[str]]:
    """Every row of every read-model table, as sorted JSON text."""
    conn = await asyncpg.connect(url)
    try:
        return {
            table: sorted(
                await conn.fetchval(f"SELECT coalesce(array_agg(row_to_json(t)::text), '{{}}') FROM \"{table}\" t")
            )
            for table in read_model_tables()
        }
    finally:
        await conn.close()
