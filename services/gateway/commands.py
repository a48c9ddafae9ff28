"""HTTP routes for saved commands: named scripts, looked up by id or name, that runs start from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from scriptbus.gateway import actions, catalogue, idempotency, queries
from scriptbus.gateway.auth import Admin, Role, Runner, need
from scriptbus.gateway.content_type import require_json
from scriptbus.gateway.env_access import check_request_env
from scriptbus.gateway.idempotency import IdempotencyKey, Outcome
from scriptbus.gateway.openapi import (
    IN_PROGRESS,
    INVALID,
    NOT_JSON,
    REPLAYED_HEADERS,
    TOO_LARGE,
    UNAUTHORIZED,
    UNAVAILABLE,
    conflict,
    not_found,
)
from scriptbus.gateway.runs import run_outcome
from scriptbus.gateway.schemas import (
    MAX_BIGINT,
    NO_NUL_PATTERN,
    Command,
    CommandCreate,
    CommandList,
    CommandRunCreate,
    Run,
)
from scriptbus.gateway.state import Gateway, get_gateway

PREFIX = "/api/v1/commands"
router = APIRouter(prefix=PREFIX, tags=["commands"], dependencies=[Depends(need(Role.read))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
CommandRef = Annotated[
    str, Path(min_length=1, max_length=128, pattern=NO_NUL_PATTERN, description="The command's id or name.")
]

_404 = not_found("command")
_NAME_TAKEN = "The name is taken by another command (`command name 'x' is taken`)"


@router.post(
    "",
    status_code=201,
    response_model=Command,
    summary="Save a command",
    dependencies=[Depends(require_json)],
    responses={
        201: {"description": "The command, saved.", "headers": REPLAYED_HEADERS},
        **UNAUTHORIZED,
        **conflict(f"{_NAME_TAKEN}, or {IN_PROGRESS}."),
        **NOT_JSON,
        **TOO_LARGE,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def create_command(
    body: CommandCreate, request: Request, gw: GatewayDep, caller: Admin, idempotency_key: IdempotencyKey = None
) -> Response:
    """Save a named script. Names are unique; `Location` names the new command, and a `GET` right after
    finds it."""

    async def act(_new_id: str) -> Outcome:
        # A command keeps a fresh id: its unique name already stops a retry from making a second one.
        command = await catalogue.create_command(gw, body, caller.name)
        return Outcome(201, command, {"Location": f"{PREFIX}/{command.id}"}, ("command", command.id))

    return await idempotency.respond(gw, request, idempotency_key, act)


@router.get("", response_model=CommandList, summary="List commands", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_commands(
    gw: GatewayDep,
    q: Annotated[
        str,
        Query(
            max_length=256,
            pattern=NO_NUL_PATTERN,
            description="Only commands whose name or description contains this (any case).",
        ),
    ] = "",
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_BIGINT, description="Commands to skip.")] = 0,
) -> CommandList:
    """Commands ordered by name."""
    return await queries.list_commands(gw, q, limit, offset)


@router.get(
    "/{ref}",
    response_model=Command,
    summary="Get a command",
    responses={**UNAUTHORIZED, **_404, **UNAVAILABLE},
)
async def get_command(ref: CommandRef, gw: GatewayDep) -> Command:
    """One command, by id or by name."""
    return await queries.get_command(gw, ref)


@router.put(
    "/{ref}",
    response_model=Command,
    summary="Replace a command",
    dependencies=[Depends(require_json)],
    responses={**UNAUTHORIZED, **_404, **conflict(_NAME_TAKEN + "."), **NOT_JSON, **TOO_LARGE, **UNAVAILABLE},
)
async def replace_command(ref: CommandRef, body: CommandCreate, gw: GatewayDep, caller: Admin) -> Command:
    """Replace the whole command (fields left out take their defaults, not their old values); a new
    `name` renames it if that name is free. `version` goes up by one. Past runs keep their script."""
    return await catalogue.replace_command(gw, ref, body, caller.name)


@router.delete(
    "/{ref}",
    status_code=204,
    response_class=Response,
    summary="Delete a command",
    responses={**UNAUTHORIZED, **_404, **UNAVAILABLE},
)
async def delete_command(ref: CommandRef, gw: GatewayDep, caller: Admin) -> Response:
    """Delete a command; its name is free again at once. Past runs keep their script."""
    await catalogue.delete_command(gw, ref, caller.name)
    return Response(status_code=204)


@router.post(
    "/{ref}/runs",
    status_code=202,
    response_model=Run,
    summary="Run a command",
    dependencies=[Depends(require_json)],
    responses={
        202: {"description": "The run, queued.", "headers": REPLAYED_HEADERS},
        **UNAUTHORIZED,
        **_404,
        **conflict(IN_PROGRESS),
        **NOT_JSON,
        **TOO_LARGE,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def run_command(
    ref: CommandRef,
    request: Request,
    gw: GatewayDep,
    caller: Runner,
    body: CommandRunCreate | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue a run of the command's script (copied into the run: later edits do not change it) with
    `args` as `$1`, `$2`, …; `env` is merged over the command's; fields left out take the command's
    values. Same answer as `POST /api/v1/runs`."""
    overrides = body if body is not None else CommandRunCreate()
    check_request_env(request, overrides.env)

    async def act(run_id: str) -> Outcome:
        return run_outcome(await actions.create_command_run(gw, ref, overrides, run_id, caller.name))

    return await idempotency.respond(gw, request, idempotency_key, act)
