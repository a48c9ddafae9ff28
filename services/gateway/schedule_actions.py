"""The write side of schedules: checks a user can act on (422 naming the field), then one event each.

A schedule's id is derived from its name, so "is the name free" and "store the schedule" are one append
with an expected last sequence on `schedules.<id>.>`: two requests creating the same name at once cannot
both succeed, with no bucket and no read model in the way.
"""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
import nats.js.errors
from fastapi import Request
from pydantic import ValidationError

from scriptbus.events.active_runs import WRONG_LAST_SEQUENCE
from scriptbus.events.codec import decode_event, encode_event, event_headers
from scriptbus.events.publishing import subject_for
from scriptbus.events.schedules import (
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleEvent,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSpec,
    ScheduleUpdated,
    schedule_id,
)
from scriptbus.gateway import actions, queries, schedule_readmodels, secret_names, workflow_readmodels
from scriptbus.gateway.env_access import check_request_env
from scriptbus.gateway.errors import BusUnavailable, GatewayError, bus_errors, db_errors, invalid_input
from scriptbus.gateway.schedule_schemas import Schedule, SchedulePatch
from scriptbus.gateway.state import Gateway

log = logging.getLogger(__name__)

_HEADER_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"


class ScheduleNotFound(GatewayError):
    status_code = 404

    def __init__(self, ref: str) -> None:
        super().__init__(f"schedule '{ref}' not found")


class ScheduleConflict(GatewayError):
    status_code = 409


async def _checked(gw: Gateway, request: Request, spec: ScheduleSpec) -> ScheduleSpec:
    """The spec with its target resolved (a command may be named by its name; the id is kept), or a 422."""
    check_request_env(request, spec.env)
    await secret_names.check_usable(gw, spec.secrets, spec.env)
    if spec.command_id is not None:
        try:
            command = await queries.get_command(gw, spec.command_id)
        except GatewayError as exc:
            if exc.status_code != 404:
                raise
            raise invalid_input(
                ("body", "command_id"), f"no command {spec.command_id!r}; save it first (`POST /api/v1/commands`)"
            ) from None
        return spec.model_copy(update={"command_id": command.id})
    assert spec.workflow is not None
    with db_errors():
        row = await workflow_readmodels.get_workflow_row(gw.pool, spec.workflow.project, spec.workflow.workflow)
    if row is None:
        raise invalid_input(
            ("body", "workflow"),
            f"no workflow {spec.workflow.workflow!r} in project {spec.workflow.project!r}; import it first",
            spec.workflow.model_dump(),
        )
    return spec


async def _append(gw: Gateway, event: ScheduleEvent, expected_seq: int, what: str) -> int:
    """Store `event` only if the schedule's latest message is at `expected_seq` (0: it has none)."""
    actions.require_bus(gw)
    headers = {
        **event_headers(event),
        "Nats-Expected-Last-Subject-Sequence": str(expected_seq),
        _HEADER_SUBJECT: gw.subjects.schedule_event(event.schedule_id, ">"),
    }
    try:
        ack = await gw.js.publish(subject_for(gw.subjects, event), encode_event(event), headers=headers, timeout=5)
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            raise ScheduleConflict("the schedule was changed by another request meanwhile; try again") from exc
        raise BusUnavailable(f"NATS refused to {what}: {exc}") from exc
    except (nats.errors.Error, OSError) as exc:
        raise BusUnavailable(f"NATS unavailable: could not {what}: {exc or type(exc).__name__}") from exc
    return ack.seq


async def _last(gw: Gateway, sched_id: str) -> tuple[int, ScheduleEvent | None]:
    """The sequence and event of the schedule's latest message in the stream; (0, None) when there is none."""
    with bus_errors("read the schedule"):
        try:
            msg = await gw.js.get_last_msg(gw.subjects.events_stream, gw.subjects.schedule_event(sched_id, "*"))
        except nats.js.errors.NotFoundError:
            return 0, None
    event = decode_event(msg.data or b"{}")
    return msg.seq or 0, event if isinstance(event, ScheduleEvent) else None


async def _read_back(gw: Gateway, ref: str, seq: int) -> Schedule:
    await actions.readable(gw, seq)
    return await get(gw, ref)


async def get(gw: Gateway, ref: str) -> Schedule:
    with db_errors():
        found = await schedule_readmodels.get_schedule(gw.pool, ref)
    if found is None:
        raise ScheduleNotFound(ref)
    return found


async def create(gw: Gateway, request: Request, spec: ScheduleSpec, by: str) -> Schedule:
    spec = await _checked(gw, request, spec)
    sched_id = schedule_id(spec.name)
    seq, last = await _last(gw, sched_id)
    if last is not None and not isinstance(last, ScheduleDeleted):
        raise ScheduleConflict(f"schedule name '{spec.name}' is taken; pick another or delete that schedule")
    event = ScheduleCreated(schedule_id=sched_id, spec=spec, created_by=by)
    actions.check_size(gw, event)
    seq = await _append(gw, event, seq, "store the schedule")
    log.info("schedule %s (%s) created (seq %d)", sched_id, spec.name, seq)
    return await _read_back(gw, sched_id, seq)


async def replace(gw: Gateway, request: Request, ref: str, spec: ScheduleSpec, by: str) -> Schedule:
    current = await get(gw, ref)
    if spec.name != current.name:
        raise invalid_input(
            ("body", "name"), "a schedule's name cannot change; create a new schedule and delete this one", spec.name
        )
    return await _update(gw, request, current, spec, by)


async def patch(gw: Gateway, request: Request, ref: str, body: SchedulePatch, by: str) -> Schedule:
    current = await get(gw, ref)
    merged: dict[str, Any] = ScheduleSpec.model_validate(
        current.model_dump(include=set(ScheduleSpec.model_fields))
    ).model_dump()
    given = body.model_dump(exclude_unset=True)
    if "cron" in given or "every_s" in given:
        merged.update(cron=None, every_s=None)
    if "command_id" in given or "workflow" in given:
        merged.update(command_id=None, workflow=None)
    merged.update({k: v for k, v in given.items() if v is not None})
    try:
        spec = ScheduleSpec.model_validate(merged)
    except ValidationError as exc:
        raise invalid_input(("body",), "; ".join(e["msg"] for e in exc.errors()), given) from None
    return await _update(gw, request, current, spec, by)


async def _update(gw: Gateway, request: Request, current: Schedule, spec: ScheduleSpec, by: str) -> Schedule:
    spec = await _checked(gw, request, spec)
    seq, last = await _last(gw, current.id)
    event = ScheduleUpdated(schedule_id=current.id, spec=spec, updated_by=by)
    actions.check_size(gw, event)
    seq = await _append(gw, event, seq, "change the schedule")
    return await _read_back(gw, current.id, seq)


async def delete(gw: Gateway, ref: str, by: str) -> None:
    current = await get(gw, ref)
    seq = await actions.publish(gw, ScheduleDeleted(schedule_id=current.id, deleted_by=by), "delete the schedule")
    await actions.readable(gw, seq)


async def pause(gw: Gateway, ref: str, paused: bool, by: str) -> Schedule:
    current = await get(gw, ref)
    if current.paused == paused:
        return current
    event: ScheduleEvent = (
        SchedulePaused(schedule_id=current.id, paused_by=by)
        if paused
        else ScheduleResumed(schedule_id=current.id, resumed_by=by)
    )
    seq = await actions.publish(gw, event, "pause the schedule" if paused else "resume the schedule")
    return await _read_back(gw, current.id, seq)
