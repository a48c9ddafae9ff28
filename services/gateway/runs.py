"""HTTP routes for runs: each parses its input, calls one function, and returns."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from scriptbus.events.output import OutputStream
from scriptbus.events.statuses import RunStatus
from scriptbus.gateway import actions, output, queries
from scriptbus.gateway.auth import require_token
from scriptbus.gateway.schemas import Message, Run, RunCreate, RunList
from scriptbus.gateway.state import Gateway, get_gateway

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Depends(require_token)])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
RunId = Annotated[uuid.UUID, Path(description="The run's id, a UUID.")]

_401: dict[int | str, dict[str, Any]] = {401: {"model": Message, "description": "Missing or wrong token."}}
_404: dict[int | str, dict[str, Any]] = {404: {"model": Message, "description": "No such run."}}
_409: dict[int | str, dict[str, Any]] = {409: {"model": Message, "description": "Not in a state for this."}}
_503: dict[int | str, dict[str, Any]] = {
    503: {"model": Message, "description": "NATS or PostgreSQL is unavailable; nothing was changed."}
}


@router.post(
    "",
    status_code=202,
    response_model=Run,
    summary="Run a script",
    responses={
        **_401,
        413: {"model": Message, "description": "The request as a whole is too large for one event."},
        **_503,
    },
)
async def create_run(body: RunCreate, response: Response, gw: GatewayDep) -> Run:
    """Queue a bash script for an executor of `pool` (or exactly `host`).

    Answers once the run is readable, so a `GET` right after finds it; its status is `queued` until an
    executor starts it. `Location` names the new run."""
    run = await actions.create_run(gw, body)
    response.headers["Location"] = f"{router.prefix}/{run.id}"
    return run


@router.get("", response_model=RunList, summary="List runs", responses={**_401, **_503})
async def list_runs(
    gw: GatewayDep,
    status: Annotated[RunStatus | None, Query(description="Only runs with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, description="Runs to skip.")] = 0,
) -> RunList:
    """Runs newest first, without their output."""
    return await queries.list_runs(gw, status, limit, offset)


@router.get("/{run_id}", response_model=Run, summary="Get a run", responses={**_401, **_404, **_503})
async def get_run(run_id: RunId, gw: GatewayDep) -> Run:
    """Status, exit code or signal, host, pid, timestamps, output size and the last 64 KiB of output."""
    return await queries.get_run(gw, str(run_id))


@router.get(
    "/{run_id}/output",
    summary="Get a run's output bytes",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The exact bytes the script wrote.",
        },
        **_401,
        **_404,
        **_503,
    },
)
async def get_output(
    run_id: RunId,
    gw: GatewayDep,
    offset: Annotated[
        int, Query(ge=0, description="First byte to send, counted within `stream` when one is given.")
    ] = 0,
    stream: Annotated[
        OutputStream | None, Query(description="Only stdout or only stderr; both interleaved if omitted.")
    ] = None,
    follow: Annotated[
        bool, Query(description="Keep the response open and send new bytes live until the run ends.")
    ] = False,
) -> StreamingResponse:
    """The output as raw bytes (`application/octet-stream`), exactly as written, from `offset` on."""
    body = await output.open_output(gw, str(run_id), offset, stream, follow)
    # no-transform / X-Accel-Buffering: proxies must pass live bytes through as they come.
    headers = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="application/octet-stream", headers=headers)


@router.post(
    "/{run_id}/stop",
    status_code=202,
    response_model=Run,
    summary="Stop a run",
    responses={**_401, **_404, **_409, **_503},
)
async def stop_run(run_id: RunId, gw: GatewayDep) -> Run:
    """A queued run is cancelled at once and will never start (status `cancelled`); a running one gets
    SIGTERM, then SIGKILL after its `stop_grace_s` (status `stopping`, then `stopped` or `killed`).
    409 when the run has already finished."""
    return await actions.stop_run(gw, str(run_id))


@router.delete(
    "/{run_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a finished run",
    responses={**_401, **_404, **_409, **_503},
)
async def delete_run(run_id: RunId, gw: GatewayDep) -> Response:
    """Forget a finished run and its output. 409 while it is queued or running: stop it first."""
    await actions.delete_run(gw, str(run_id))
    return Response(status_code=204)
