"""HTTP routes for runs: each parses its input, calls one function, and returns."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from scriptbus.events.output import OutputStream
from scriptbus.events.statuses import RunStatus
from scriptbus.gateway import actions, events_sse, idempotency, output, output_chunks, queries
from scriptbus.gateway.auth import Admin, Role, Runner, need
from scriptbus.gateway.content_type import require_json
from scriptbus.gateway.env_access import check_request_env
from scriptbus.gateway.errors import invalid_input
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
from scriptbus.gateway.readmodels import OutputPiece, RunFilter
from scriptbus.gateway.schemas import MAX_BIGINT, NO_NUL_PATTERN, Run, RunCreate, RunList, utc_instant
from scriptbus.gateway.state import Gateway, get_gateway

PREFIX = "/api/v1/runs"
router = APIRouter(prefix=PREFIX, tags=["runs"], dependencies=[Depends(need(Role.read))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
RunId = Annotated[uuid.UUID, Path(description="The run's id, a UUID.")]

_404 = not_found("run")


def run_outcome(run: Run) -> Outcome:
    """A 202 with the run and its `Location`."""
    return Outcome(202, run, {"Location": f"{PREFIX}/{run.id}"}, ("run", run.id))


# JetStream sequences are uint64, but the gateway adds one to an event id and PostgreSQL holds them as bigint.
MAX_EVENT_ID = MAX_BIGINT - 1


def _utc(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return utc_instant(value)
    except ValueError as exc:
        raise invalid_input(("query", name), f"Value error, {exc}", value.isoformat()) from exc


@router.post(
    "",
    status_code=202,
    response_model=Run,
    summary="Run a script or a saved command",
    dependencies=[Depends(require_json)],
    responses={
        202: {"description": "The run, queued.", "headers": REPLAYED_HEADERS},
        **UNAUTHORIZED,
        **not_found("command (for `command_id`)"),
        **conflict(IN_PROGRESS),
        **NOT_JSON,
        **TOO_LARGE,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def create_run(
    body: RunCreate, request: Request, gw: GatewayDep, caller: Runner, idempotency_key: IdempotencyKey = None
) -> Response:
    """Queue a bash script for an executor of `pool` (or exactly `host`): an inline `script`, or the
    saved command named by `command_id` (its id or name) with `args`. Exactly one of the two.

    Answers once the run is readable, so a `GET` right after finds it; its status is `queued` until an
    executor starts it. `Location` names the new run."""
    errors = body.source_errors()
    if errors:
        raise RequestValidationError(errors)
    check_request_env(request, body.env)

    async def act(run_id: str) -> Outcome:
        return run_outcome(await actions.create_run(gw, body, run_id, caller.name))

    return await idempotency.respond(gw, request, idempotency_key, act)


@router.get("", response_model=RunList, summary="List runs", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_runs(
    gw: GatewayDep,
    status: Annotated[RunStatus | None, Query(description="Only runs with this status.")] = None,
    command_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            pattern=NO_NUL_PATTERN,
            description="Only runs of this saved command (id or name).",
        ),
    ] = None,
    host: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="Only runs on this host (or queued for it)."),
    ] = None,
    pool: Annotated[
        str | None,
        Query(min_length=1, max_length=128, pattern=NO_NUL_PATTERN, description="Only runs of this pool."),
    ] = None,
    created_after: Annotated[
        datetime | None, Query(description="Only runs created after this time (ISO 8601; UTC if no zone).")
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="Only runs created before this time (ISO 8601; UTC if no zone).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_BIGINT, description="Runs to skip; must be 0 with `cursor`.")] = 0,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=512,
            description="`next_cursor` of the previous page: the next older page, stable while new runs are added.",
        ),
    ] = None,
    workflow_run: Annotated[uuid.UUID | None, Query(description="Only the step runs of this workflow run.")] = None,
    schedule_id: Annotated[uuid.UUID | None, Query(description="Only the runs this schedule started.")] = None,
) -> RunList:
    """Runs newest first (by creation time, then id), without their output."""
    where = RunFilter(
        status=status,
        command_id=command_id,
        host=host,
        pool=pool,
        created_after=_utc("created_after", created_after),
        created_before=_utc("created_before", created_before),
        workflow_run=str(workflow_run) if workflow_run is not None else None,
        schedule=str(schedule_id) if schedule_id is not None else None,
    )
    return await queries.list_runs(gw, where, limit, offset, cursor)


@router.get("/{run_id}", response_model=Run, summary="Get a run", responses={**UNAUTHORIZED, **_404, **UNAVAILABLE})
async def get_run(run_id: RunId, gw: GatewayDep) -> Run:
    """Status, exit code or signal, host, pid, timestamps, output size and the last 64 KiB of output.
    A queued run's `reason` says why it waits when no live executor serves its pool or host."""
    return await queries.get_run(gw, str(run_id))


OutputOffset = Annotated[
    int,
    Query(ge=0, le=MAX_BIGINT, description="First byte to send, counted within `stream` when one is given."),
]
StreamChoice = Annotated[
    OutputStream | None, Query(description="Only stdout or only stderr; both interleaved if omitted.")
]
Follow = Annotated[bool, Query(description="Keep the response open and send new bytes live until the run ends.")]
Tail = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_BIGINT,
        description="Start this many bytes before the end of what is stored (of `stream`, when given) "
        "instead of at `offset`; the start is in the `X-Output-Offset` header.",
    ),
]
Limit = Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="Send at most this many bytes, then end.")]
# no-transform / X-Accel-Buffering: proxies must pass live bytes through as they come.
_LIVE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


async def _output_pieces(
    gw: Gateway,
    run_id: uuid.UUID,
    offset: int,
    stream: OutputStream | None,
    follow: bool,
    tail: int | None,
    limit: int | None,
) -> tuple[int, AsyncIterator[OutputPiece]]:
    """Where the answer starts, and its pieces: the query of both output routes, applied."""
    if tail is not None and offset:
        raise invalid_input(("query", "tail"), "give either offset or tail, not both", tail)
    if tail is not None:
        offset = await output.tail_offset(gw, str(run_id), stream, tail)
    pieces = await output.open_pieces(gw, str(run_id), offset, stream, follow)
    if limit is not None:
        pieces = output.limited(pieces, limit)
    return offset, pieces


@router.get(
    "/{run_id}/output",
    summary="Get a run's output bytes",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The exact bytes the script wrote.",
        },
        **UNAUTHORIZED,
        **_404,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def get_output(
    run_id: RunId,
    gw: GatewayDep,
    offset: OutputOffset = 0,
    stream: StreamChoice = None,
    follow: Follow = False,
    tail: Tail = None,
    limit: Limit = None,
) -> StreamingResponse:
    """The output as raw bytes (`application/octet-stream`), exactly as written, from `offset` on
    (or the last `tail` bytes), at most `limit` of them. `X-Output-Offset` says where the bytes start."""
    offset, pieces = await _output_pieces(gw, run_id, offset, stream, follow, tail, limit)
    headers = {**_LIVE_HEADERS, "X-Output-Offset": str(offset)}
    return StreamingResponse(output.as_bytes(pieces), media_type="application/octet-stream", headers=headers)


@router.get(
    "/{run_id}/output/chunks",
    summary="Get a run's output as chunks labelled with their stream (NDJSON)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {output_chunks.MEDIA_TYPE: {"schema": {"type": "string"}, "example": output_chunks.EXAMPLE}},
            "description": "One JSON object a line, in the order written: `stream` (`stdout` or `stderr`), "
            "`offset` of its first byte (in the combined output, or within `stream` when one is selected), "
            'and `data`: the bytes as text when they are valid UTF-8, else base64 with `"base64": true`. '
            "Joined in order, the `data` give back exactly the bytes of `/output` with the same query.",
        },
        **UNAUTHORIZED,
        **_404,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def get_output_chunks(
    run_id: RunId,
    gw: GatewayDep,
    offset: OutputOffset = 0,
    stream: StreamChoice = None,
    follow: Follow = False,
    tail: Tail = None,
    limit: Limit = None,
) -> StreamingResponse:
    """The same output as `/output` with the same `offset`, `stream`, `tail`, `limit` and `follow`, as
    NDJSON chunks that say which stream wrote each piece (the console marks stderr with them).
    `X-Output-Offset` says where the first chunk starts."""
    offset, pieces = await _output_pieces(gw, run_id, offset, stream, follow, tail, limit)
    headers = {**_LIVE_HEADERS, "X-Output-Offset": str(offset)}
    return StreamingResponse(output_chunks.as_lines(pieces), media_type=output_chunks.MEDIA_TYPE, headers=headers)


_SSE_EXAMPLE = (
    'id: 7\nevent: run.started\ndata: {"type":"run.started","run_id":"…","host":"build-1",…}\n\n'
    'id: 8\nevent: output\ndata: {"stream":"stdout","offset":0,"data":"aGkK","text":"hi\\n"}\n\n'
)


@router.get(
    "/{run_id}/events",
    summary="Follow a run's events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _SSE_EXAMPLE}},
            "description": "One SSE event per message of the run: `id` is its stream sequence, `event` its "
            "type (`run.requested`, `run.started`, `run.stop_requested`, `run.finished`, `run.deleted`, "
            "or `output`), `data` the event's JSON; for `output`, `{stream, offset, data (base64), text}`. "
            "Ends after `run.finished` or `run.deleted`.",
        },
        204: {"description": "`Last-Event-ID` is at or past the run's last event: nothing more will come."},
        **UNAUTHORIZED,
        **_404,
        **UNAVAILABLE,
    },
)
async def get_events(
    run_id: RunId,
    gw: GatewayDep,
    last_event_id_header: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=MAX_EVENT_ID,
            description="Resume after this event id (what EventSource sends).",
        ),
    ] = None,
    last_event_id: Annotated[
        int | None,
        Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id (when the header cannot be set)."),
    ] = None,
) -> Response:
    """Everything that happens to the run, live: replays what is stored, then follows. A run not started
    yet is waited for; a finished one replays and the stream closes. Resuming with `Last-Event-ID`
    delivers every later event (so every output byte) exactly once."""
    after = last_event_id_header if last_event_id_header is not None else last_event_id
    body = await events_sse.open_events(gw, str(run_id), after)
    if body is None:
        # Per the SSE spec, 204 tells an EventSource to stop reconnecting.
        return Response(status_code=204)
    return StreamingResponse(body, media_type="text/event-stream", headers=_LIVE_HEADERS)


@router.post(
    "/{run_id}/stop",
    status_code=202,
    response_model=Run,
    summary="Stop a run",
    responses={
        202: {"description": "The run, stopping or cancelled.", "headers": REPLAYED_HEADERS},
        **UNAUTHORIZED,
        **_404,
        **conflict(f"The run has already finished, or {IN_PROGRESS}."),
        **INVALID,
        **UNAVAILABLE,
    },
)
async def stop_run(
    run_id: RunId, request: Request, gw: GatewayDep, caller: Runner, idempotency_key: IdempotencyKey = None
) -> Response:
    """A queued run is cancelled at once and will never start (status `cancelled`); a running one gets
    SIGTERM, then SIGKILL after its `stop_grace_s` (status `stopping`, then `stopped` or `killed`).
    409 when the run has already finished."""

    async def act(_new_id: str) -> Outcome:
        run = await actions.stop_run(gw, str(run_id), caller.name)
        return Outcome(202, run, resource=("run", run.id))

    return await idempotency.respond(gw, request, idempotency_key, act)


@router.delete(
    "/{run_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a finished run",
    responses={
        **UNAUTHORIZED,
        **_404,
        **conflict("The run is queued or running, or a step of an active workflow run."),
        **UNAVAILABLE,
    },
)
async def delete_run(run_id: RunId, gw: GatewayDep, caller: Admin) -> Response:
    """Forget a finished run and its output (admin: it destroys what others may need). 409 while it is
    queued or running (stop it first), and while it is a step of a workflow run that has not ended."""
    await actions.delete_run(gw, str(run_id), caller.name)
    return Response(status_code=204)
