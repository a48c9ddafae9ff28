"""HTTP routes for fan-outs: one script on many executors (`/api/v1/fanouts`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from scriptbus.events.fanouts import FanoutStatus
from scriptbus.gateway import fanout_actions, fanout_readmodels, idempotency
from scriptbus.gateway.auth import Role, Runner, need
from scriptbus.gateway.content_type import require_json
from scriptbus.gateway.env_access import check_request_env
from scriptbus.gateway.errors import db_errors, invalid_input
from scriptbus.gateway.fanout_schemas import Fanout, FanoutCreate, FanoutList
from scriptbus.gateway.idempotency import IdempotencyKey, Outcome
from scriptbus.gateway.openapi import (
    IN_PROGRESS,
    INVALID,
    NOT_JSON,
    REPLAYED_HEADERS,
    UNAUTHORIZED,
    UNAVAILABLE,
    conflict,
    not_found,
)
from scriptbus.gateway.paging import decode_cursor, encode_cursor
from scriptbus.gateway.state import Gateway, get_gateway

PREFIX = "/api/v1/fanouts"
router = APIRouter(prefix=PREFIX, tags=["fan-outs"], dependencies=[Depends(need(Role.read))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
FanoutId = Annotated[uuid.UUID, Path(description="The fan-out's id, a UUID.")]
_404 = not_found("fan-out")
_ACTED = {
    202: {"description": "The fan-out.", "headers": REPLAYED_HEADERS},
    **UNAUTHORIZED,
    **_404,
    **UNAVAILABLE,
}


@router.post(
    "",
    status_code=202,
    response_model=Fanout,
    summary="Run a script on many executors",
    dependencies=[Depends(require_json)],
    responses={**_ACTED, **conflict(IN_PROGRESS), **NOT_JSON, **INVALID},
)
async def create_fanout(
    body: FanoutCreate, request: Request, gw: GatewayDep, caller: Runner, idempotency_key: IdempotencyKey = None
) -> Response:
    """One ordinary run per live executor matching `pool`, `labels` and `hosts` (recorded now, in
    `hosts`). At most `max_parallel` run at once; after `max_failures` failed hosts no more start.
    422 when no live executor matches, or a named host is not live."""
    errors = body.source_errors()
    if errors:
        raise RequestValidationError(errors)
    check_request_env(request, body.env)

    async def act(fanout_id: str) -> Outcome:
        fanout = await fanout_actions.create_fanout(gw, body, fanout_id, caller.name)
        return Outcome(202, fanout, {"Location": f"{PREFIX}/{fanout.id}"})

    return await idempotency.respond(gw, request, idempotency_key, act)


@router.get("", response_model=FanoutList, summary="List fan-outs", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_fanouts(
    gw: GatewayDep,
    status: Annotated[FanoutStatus | None, Query(description="Only fan-outs with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> FanoutList:
    """Fan-outs newest first, each with its hosts' runs."""
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor)
        except ValueError as exc:
            raise invalid_input(("query", "cursor"), f"Value error, {exc}", cursor) from exc
    with db_errors():
        items, total, more = await fanout_readmodels.list_fanouts(gw.pool, status, limit, before)
    return FanoutList(items=items, total=total, next_cursor=encode_cursor(items[-1]) if more and items else None)


@router.get("/{fanout_id}", response_model=Fanout, summary="Get a fan-out", responses={**UNAUTHORIZED, **_404})
async def get_fanout(fanout_id: FanoutId, gw: GatewayDep) -> Fanout:
    """Status, counts, and each host's latest run (id, status, exit code, times)."""
    return await fanout_actions.get_fanout(gw, str(fanout_id))


@router.post(
    "/{fanout_id}/stop",
    status_code=202,
    response_model=Fanout,
    summary="Stop a fan-out",
    responses={**_ACTED, **conflict("The fan-out has finished.")},
)
async def stop_fanout(
    fanout_id: FanoutId, request: Request, gw: GatewayDep, caller: Runner, idempotency_key: IdempotencyKey = None
) -> Response:
    """No more hosts start (they end `skipped`) and every running one is stopped; then `stopped`."""

    async def act(_new_id: str) -> Outcome:
        return Outcome(202, await fanout_actions.stop_fanout(gw, str(fanout_id), caller.name))

    return await idempotency.respond(gw, request, idempotency_key, act)


@router.post(
    "/{fanout_id}/retry",
    status_code=202,
    response_model=Fanout,
    summary="Retry a fan-out's failed hosts",
    responses={**_ACTED, **conflict("The fan-out is still running, or every host succeeded.")},
)
async def retry_fanout(
    fanout_id: FanoutId, request: Request, gw: GatewayDep, caller: Runner, idempotency_key: IdempotencyKey = None
) -> Response:
    """A new attempt on each host whose run failed (or was stopped, or never started); the others keep
    their run. Only once the fan-out has finished."""

    async def act(_new_id: str) -> Outcome:
        return Outcome(202, await fanout_actions.retry_fanout(gw, str(fanout_id), caller.name))

    return await idempotency.respond(gw, request, idempotency_key, act)
