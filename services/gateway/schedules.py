"""HTTP routes for schedules: a command or workflow started by the scheduler at cron times or every N seconds.

Changing a schedule needs `admin`: a schedule runs code later, on its own, on behalf of its author."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from scriptbus.events.schedules import ScheduleSpec
from scriptbus.gateway import schedule_actions, schedule_readmodels
from scriptbus.gateway.auth import Admin, Role, need
from scriptbus.gateway.content_type import require_json
from scriptbus.gateway.errors import db_errors
from scriptbus.gateway.openapi import INVALID, NOT_JSON, TOO_LARGE, UNAUTHORIZED, UNAVAILABLE, conflict, not_found
from scriptbus.gateway.schedule_schemas import Schedule, ScheduleList, SchedulePatch
from scriptbus.gateway.schemas import NO_NUL_PATTERN
from scriptbus.gateway.state import Gateway, get_gateway

PREFIX = "/api/v1/schedules"
router = APIRouter(prefix=PREFIX, tags=["schedules"], dependencies=[Depends(need(Role.read))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
ScheduleRef = Annotated[
    str, Path(min_length=1, max_length=128, pattern=NO_NUL_PATTERN, description="The schedule's id or name.")
]
_404 = not_found("schedule")
_WRITE = {**UNAUTHORIZED, **NOT_JSON, **TOO_LARGE, **INVALID, **UNAVAILABLE}


@router.post(
    "",
    status_code=201,
    response_model=Schedule,
    summary="Create a schedule",
    dependencies=[Depends(require_json)],
    responses={**_WRITE, **conflict("The name is taken by another schedule.")},
)
async def create_schedule(
    body: ScheduleSpec, request: Request, response: Response, gw: GatewayDep, caller: Admin
) -> Schedule:
    """Run a saved command (`command_id`, its id or name) or a workflow (`workflow`) at the times of a
    five-field `cron` expression in `timezone`, or every `every_s` seconds. Each tick fires once, whatever
    happens to schedulers; `overlap` says what a tick does while the previous run still runs, `catch_up`
    whether a tick missed while no scheduler ran is run late (`last`) or not (`none`)."""
    schedule = await schedule_actions.create(gw, request, body, caller.name)
    response.headers["Location"] = f"{PREFIX}/{schedule.id}"
    return schedule


@router.get("", response_model=ScheduleList, summary="List schedules", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_schedules(
    gw: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Schedules to skip.")] = 0,
) -> ScheduleList:
    """Schedules by name, each with its next fire times."""
    with db_errors():
        items, total = await schedule_readmodels.list_schedules(gw.pool, limit, offset)
    return ScheduleList(items=items, total=total)


@router.get(
    "/{ref}", response_model=Schedule, summary="Get a schedule", responses={**UNAUTHORIZED, **_404, **UNAVAILABLE}
)
async def get_schedule(ref: ScheduleRef, gw: GatewayDep) -> Schedule:
    """One schedule, by id or name: its next fire times and its latest ticks (what each made, or why not)."""
    return await schedule_actions.get(gw, ref)


@router.put(
    "/{ref}",
    response_model=Schedule,
    summary="Replace a schedule",
    dependencies=[Depends(require_json)],
    responses={**_WRITE, **_404},
)
async def replace_schedule(
    ref: ScheduleRef, body: ScheduleSpec, request: Request, gw: GatewayDep, caller: Admin
) -> Schedule:
    """Replace the whole definition (the name stays). Ticks before the change never fire."""
    return await schedule_actions.replace(gw, request, ref, body, caller.name)


@router.patch(
    "/{ref}",
    response_model=Schedule,
    summary="Change a schedule",
    dependencies=[Depends(require_json)],
    responses={**_WRITE, **_404},
)
async def patch_schedule(
    ref: ScheduleRef, body: SchedulePatch, request: Request, gw: GatewayDep, caller: Admin
) -> Schedule:
    """Change only the fields given."""
    return await schedule_actions.patch(gw, request, ref, body, caller.name)


@router.delete(
    "/{ref}", status_code=204, response_class=Response, summary="Delete a schedule",
    responses={**UNAUTHORIZED, **_404, **UNAVAILABLE},
)  # fmt: skip
async def delete_schedule(ref: ScheduleRef, gw: GatewayDep, caller: Admin) -> Response:
    """No more ticks; runs it made are kept. Its name is free again."""
    await schedule_actions.delete(gw, ref, caller.name)
    return Response(status_code=204)


@router.post(
    "/{ref}/pause",
    response_model=Schedule,
    summary="Pause a schedule",
    responses={**UNAUTHORIZED, **_404, **UNAVAILABLE},
)
async def pause_schedule(ref: ScheduleRef, gw: GatewayDep, caller: Admin) -> Schedule:
    """No tick fires while paused; runs already started go on."""
    return await schedule_actions.pause(gw, ref, True, caller.name)


@router.post(
    "/{ref}/resume",
    response_model=Schedule,
    summary="Resume a schedule",
    responses={**UNAUTHORIZED, **_404, **UNAVAILABLE},
)
async def resume_schedule(ref: ScheduleRef, gw: GatewayDep, caller: Admin) -> Schedule:
    """Ticks fire again from now on; those that fell while paused never do."""
    return await schedule_actions.pause(gw, ref, False, caller.name)
