"""The read side: answers straight from the read models."""

from __future__ import annotations

import dataclasses
import uuid

from scriptbus.events.subjects import host_token
from scriptbus.gateway import fleet, readmodels
from scriptbus.gateway.errors import CommandNotFound, RunNotFound, db_errors, invalid_input
from scriptbus.gateway.paging import decode_cursor, encode_cursor
from scriptbus.gateway.readmodels import RunFilter
from scriptbus.gateway.schemas import Command, CommandList, Run, RunList
from scriptbus.gateway.state import Gateway


async def get_run(gw: Gateway, run_id: str) -> Run:
    """One run with the tail of its output; `RunNotFound` when the read model does not know it."""
    with db_errors():
        run = await readmodels.get_run(gw.pool, run_id)
        if run is None:
            raise RunNotFound(run_id)
        return await fleet.explain_one(gw, run)


async def _command_filter(gw: Gateway, ref: str) -> str | None:
    """The command id to filter runs by: `ref` itself when it is an id, else the id of the command named
    `ref`; None when no command has that name (so no run matches)."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    with db_errors():
        return await readmodels.command_id_by_name(gw.pool, ref)


async def list_runs(gw: Gateway, where: RunFilter, limit: int, offset: int, cursor: str | None) -> RunList:
    """A page of runs, newest first; with `cursor`, the page after the one that returned it."""
    before = None
    if cursor is not None:
        if offset:
            raise invalid_input(("query", "offset"), "Value error, must be absent or 0 when `cursor` is given", offset)
        try:
            before = decode_cursor(cursor)
        except ValueError as exc:
            raise invalid_input(("query", "cursor"), f"Value error, {exc}", cursor) from exc
    if where.host is not None:
        # Hosts are stored as subject tokens; `build-1.example.com` finds `build-1-example-com`.
        where = dataclasses.replace(where, host=host_token(where.host))
    if where.command_id is not None:
        command_id = await _command_filter(gw, where.command_id)
        if command_id is None:
            return RunList(items=[], total=0, next_cursor=None)
        where = dataclasses.replace(where, command_id=command_id)
    with db_errors():
        items, total, more = await readmodels.list_runs(gw.pool, where, limit, offset, before)
        items = await fleet.explain_queued(gw, items)
    return RunList(items=items, total=total, next_cursor=encode_cursor(items[-1]) if more and items else None)


async def get_command(gw: Gateway, ref: str) -> Command:
    """The command with id or name `ref`; `CommandNotFound` otherwise."""
    with db_errors():
        command = await readmodels.get_command(gw.pool, ref)
    if command is None:
        raise CommandNotFound(ref)
    return command


async def list_commands(gw: Gateway, q: str, limit: int, offset: int) -> CommandList:
    """A page of commands by name, those whose name or description contains `q`."""
    with db_errors():
        items, total = await readmodels.list_commands(gw.pool, q, limit, offset)
    return CommandList(items=items, total=total)
