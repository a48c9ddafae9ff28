"""The saved-command catalogue's write side: create, replace and delete commands as events, with names
kept unique by the command-names bucket, whose `create` is the one atomic check.

A name is reserved before the event that uses it is published and freed after the event that gives
it up, so two commands never hold one name; a crash in between leaves a reservation that nothing in
the stream backs, which the next claimant takes over once it is old enough.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from scriptbus.events.codec import decode_event
from scriptbus.events.commands import (
    CommandCreated,
    CommandDefinition,
    CommandDeleted,
    CommandUpdated,
    command_name_key,
)
from scriptbus.events.envelope import new_id, utcnow
from scriptbus.events.subjects import valid_token
from scriptbus.gateway import actions, files, queries, readmodels, secret_names
from scriptbus.gateway.errors import DB_ERRORS, NameTaken, bus_errors
from scriptbus.gateway.schemas import Command, CommandCreate
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

# Bounds the walk through one command's events when judging a reservation.
_MAX_EVENTS_WALKED = 100_000
name_key = command_name_key  # shared with the scheduler, which resolves a workflow step's command by name


async def _last_name(gw: Gateway, command_id: str) -> str | None:
    """The name the stream last gave `command_id`; None when it has no events or was deleted."""
    s = gw.subjects
    if not valid_token(command_id):
        return None
    subject = s.command_event(command_id, "*")
    name: str | None = None
    seq = 1
    for _ in range(_MAX_EVENTS_WALKED):
        try:
            msg = await gw.js.get_msg(s.events_stream, seq=seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            break
        event = decode_event(msg.data or b"{}")
        if isinstance(event, CommandDefinition):
            name = event.name
        elif isinstance(event, CommandDeleted):
            name = None
        seq = (msg.seq or 0) + 1
    return name


async def _abandoned(gw: Gateway, name: str, entry: KeyValue.Entry) -> bool:
    """True when the reservation `entry` of `name` is old and its command does not use the name."""
    assert entry.revision is not None
    msg = await gw.js.get_msg(f"KV_{gw.subjects.command_names_bucket}", seq=entry.revision)
    if msg.time is None or utcnow() - msg.time < timedelta(seconds=gw.settings.stale_name_reservation_s):
        return False
    holder = (entry.value or b"").decode(errors="replace")
    return await _last_name(gw, holder) != name


async def _reserve(gw: Gateway, name: str, command_id: str) -> None:
    """Make `name` point at `command_id`; `NameTaken` when another command holds it."""
    key = name_key(name)
    with bus_errors(f"reserve the command name {name!r}"):
        kv = await gw.command_names()
        for _ in range(3):
            try:
                await kv.create(key, command_id.encode())
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue  # freed meanwhile: try again
            if entry.value == command_id.encode():
                return
            if not await _abandoned(gw, name, entry):
                raise NameTaken(name)
            log.warning("taking over the name %r, left reserved by command %r", name, entry.value)
            try:
                await kv.update(key, command_id.encode(), last=entry.revision)
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
    raise NameTaken(name)


async def _release(gw: Gateway, name: str, command_id: str) -> None:
    """Free `name` if `command_id` still holds it. A failure is only logged: the event is stored, and the
    stale reservation is taken over by the next command that wants the name."""
    key = name_key(name)
    try:
        kv = await gw.command_names()
        entry = await kv.get(key)
        if entry.value == command_id.encode():
            await kv.delete(key, last=entry.revision)
    except nats.js.errors.KeyNotFoundError:
        pass
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        log.warning("could not free the command name %r: %s", name, exc)


async def _read_back(gw: Gateway, command_id: str, seq: int) -> Command | None:
    if not await actions.readable(gw, seq):
        return None
    try:
        command = await readmodels.get_command(gw.pool, command_id)
    except DB_ERRORS as exc:
        log.warning("reading command %s back failed: %s", command_id, exc)
        return None
    # The id, not the name, must match: a name can be reused right after a delete.
    return command if command is not None and command.id == command_id else None


def _from_event(event: CommandDefinition, version: int, created: Command | None = None) -> Command:
    return Command(
        id=event.command_id,
        name=event.name,
        description=event.description,
        script=event.script,
        env=event.env,
        secrets=event.secrets,
        files=event.files,
        artifacts=event.artifacts,
        timeout_s=event.timeout_s,
        stop_grace_s=event.stop_grace_s,
        pool=event.pool,
        version=version,
        created_at=created.created_at if created else event.occurred_at,
        updated_at=event.occurred_at,
    )


async def create_command(gw: Gateway, body: CommandCreate, by: str) -> Command:
    """Save a new command; `NameTaken` when its name is in use. `by` is the caller's name."""
    event = CommandCreated(command_id=new_id(), created_by=by, **body.model_dump())
    actions.check_size(gw, event)
    await secret_names.check_usable(gw, event.secrets, event.env)
    await files.check_stored(gw, event.files)
    actions.require_bus(gw)
    await _reserve(gw, body.name, event.command_id)
    seq = await actions.publish(gw, event, "save the command")
    log.info("command %s (%s) created (seq %d)", event.command_id, body.name, seq)
    return await _read_back(gw, event.command_id, seq) or _from_event(event, 1)


async def replace_command(gw: Gateway, ref: str, body: CommandCreate, by: str) -> Command:
    """Replace the whole definition of the command with id or name `ref`, renaming it if `body.name`
    differs (`NameTaken` when the new name is in use)."""
    current = await queries.get_command(gw, ref)
    event = CommandUpdated(command_id=current.id, updated_by=by, **body.model_dump())
    actions.check_size(gw, event)
    await secret_names.check_usable(gw, event.secrets, event.env)
    await files.check_stored(gw, event.files)
    actions.require_bus(gw)
    renamed = body.name != current.name
    if renamed:
        await _reserve(gw, body.name, current.id)
    seq = await actions.publish(gw, event, "save the command")
    if renamed:
        await _release(gw, current.name, current.id)
    log.info("command %s (%s) replaced (seq %d)", current.id, body.name, seq)
    return await _read_back(gw, current.id, seq) or _from_event(event, current.version + 1, current)


async def delete_command(gw: Gateway, ref: str, by: str) -> None:
    """Delete the command with id or name `ref`; runs started from it keep their copy of the script."""
    current = await queries.get_command(gw, ref)
    event = CommandDeleted(command_id=current.id, name=current.name, deleted_by=by)
    seq = await actions.publish(gw, event, "delete the command")
    await _release(gw, current.name, current.id)
    log.info("command %s (%s) deleted (seq %d)", current.id, current.name, seq)
    await actions.readable(gw, seq)
