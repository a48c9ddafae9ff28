"""HTTP routes for projects, workflows and workflow runs: seed 004's verbs (`import`, `remove`, `export`)
with its JSON as is, the canonical REST resources beside them, and running, stopping, retrying and
holding workflow runs."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from scriptbus.events.workflow_definitions import (
    Change,
    DefinitionConflict,
    DefinitionError,
    DefinitionNotFound,
    Project,
    ProjectDocument,
    SeedDocument,
    WorkflowDocument,
    create,
    dump,
    parse_document,
    parse_removal,
    put_workflow,
    remove,
    remove_workflow,
    replace,
)
from scriptbus.events.workflows import NAME_PATTERN, WorkflowRunStatus
from scriptbus.gateway import idempotency, wfrun_events, workflow_actions, workflow_readmodels
from scriptbus.gateway.auth import Admin, Caller, Role, Runner, need
from scriptbus.gateway.content_type import require_json
from scriptbus.gateway.errors import db_errors, invalid_input
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
from scriptbus.gateway.paging import decode_cursor, encode_cursor
from scriptbus.gateway.runs import MAX_EVENT_ID
from scriptbus.gateway.schemas import text
from scriptbus.gateway.state import Gateway, get_gateway
from scriptbus.gateway.workflow_actions import DefinitionNotFoundError, WorkflowConflict
from scriptbus.gateway.workflow_readmodels import WorkflowRunFilter
from scriptbus.gateway.workflow_schemas import (
    SEED_BODY,
    ProjectList,
    ProjectView,
    WorkflowRun,
    WorkflowRunCreate,
    WorkflowRunList,
    WorkflowView,
)

projects = APIRouter(prefix="/api/v1/projects", tags=["workflows"], dependencies=[Depends(need(Role.read))])
runs = APIRouter(prefix="/api/v1/workflow-runs", tags=["workflows"], dependencies=[Depends(need(Role.read))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="A project, workflow or task name.")]
WfRunId = Annotated[uuid.UUID, Path(description="The workflow run's id, a UUID.")]

_RUNNING = "A workflow it names is running (stop it first), or another change of the project is in progress."
_SEED = {**UNAUTHORIZED, **NOT_JSON, **TOO_LARGE, **INVALID, **UNAVAILABLE}
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _loc(field: str) -> tuple[Any, ...]:
    """`context.project.workflows[0].name` as FastAPI's `loc`: ("body", "context", …, 0, "name")."""
    if field == "body":
        return ("body",)
    return ("body", *(int(index) if index else name for name, index in _PATH_PART.findall(field)))


@contextlib.contextmanager
def _definition_errors(where: Literal["body", "query"] = "body") -> Iterator[None]:
    """Seed-004 verb failures as HTTP: bad input 422 naming the field, unknown names 404, contradictions 409."""
    try:
        yield
    except DefinitionNotFound as exc:
        raise DefinitionNotFoundError(str(exc)) from None
    except DefinitionConflict as exc:
        raise WorkflowConflict(str(exc)) from None
    except DefinitionError as exc:
        loc = _loc(exc.field) if where == "body" else ("query", exc.field)
        raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": exc.reason, "input": None}]) from None


def _check_text(value: Any, path: str) -> None:
    """Every string must be storable: no NUL, no lone surrogate (as in every other request body)."""
    if isinstance(value, str):
        try:
            text(value)
        except ValueError as exc:
            raise DefinitionError(path, str(exc)) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path)
            _check_text(item, f"{path}.{key}" if path != "body" else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{path}[{i}]")


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise DefinitionError("body", "Field required: send seed 004's JSON document")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DefinitionError("body", f"not JSON: {exc}") from None
    _check_text(data, "body")
    return data


def _exported(change: Change, status: int) -> Response:
    if change.after is None:
        return Response(status_code=204)
    return JSONResponse(dump(change.after), status_code=status)


# seed 004's verbs ---------------------------------------------------------------------------------


@projects.post(
    "/import",
    summary="Create or update definitions from seed 004's JSON (spad create / update)",
    dependencies=[Depends(require_json)],
    openapi_extra=SEED_BODY,
    responses={
        200: {"description": "The project after the change, as seed 004's JSON."},
        201: {"description": "The project was made: the project, as seed 004's JSON."},
        **not_found("project, workflow or task"),
        **conflict(_RUNNING + " For `create`: a task that exists already."),
        **_SEED,
    },
)
async def import_project(
    request: Request,
    gw: GatewayDep,
    caller: Admin,
    mode: Annotated[
        Literal["create", "replace"],
        Query(
            description="`create` (spad create): add what is missing, a task at a taken place shifts the "
            "later ones down. `replace` (spad update): replace the named workflows and tasks."
        ),
    ] = "create",
) -> Response:
    """Seed 004's `{"context": {"project": {...}}}` as is. `create` makes the project and workflows that are
    missing and adds the tasks; `replace` replaces the workflows and tasks it names (409 while any of
    them is running). Every changed workflow gets a new version; runs keep the version they started with."""
    with _definition_errors():
        doc = parse_document(await _json_body(request))
        verb = create if mode == "create" else replace
        change = await workflow_actions.change_project(
            gw, doc.project.name, lambda current: verb(current, doc), caller.name
        )
    return _exported(change, 201 if change.before is None else 200)


@projects.post(
    "/remove",
    summary="Remove the leaves of seed 004's tree (spad delete)",
    dependencies=[Depends(require_json)],
    openapi_extra=SEED_BODY,
    responses={
        200: {"description": "The project after the change, as seed 004's JSON."},
        204: {"description": "The project was empty and is removed."},
        **not_found("project, workflow or task"),
        **conflict(_RUNNING + " Or a project that still has workflows."),
        **_SEED,
    },
)
async def remove_definitions(request: Request, gw: GatewayDep, caller: Admin) -> Response:
    """Where the tree ends is what goes: a task, or a whole workflow given without `tasks`. A project is
    removed only when it is empty (seed 004: projects are things of the real world). 409 while running."""
    with _definition_errors():
        doc = parse_removal(await _json_body(request))
        change = await workflow_actions.change_project(
            gw, doc.project.name, lambda current: remove(current, doc), caller.name
        )
    return _exported(change, 200)


async def _project(gw: Gateway, name: str) -> Project:
    with db_errors():
        project = await workflow_readmodels.get_project(gw.pool, name)
    if project is None:
        raise DefinitionNotFoundError(f"no project {name!r}")
    return project


@projects.get(
    "/{project}/export",
    summary="Seed 004's JSON of a project, workflow or task (spad dump)",
    responses={
        200: {"description": "Seed 004's JSON document."},
        **UNAUTHORIZED,
        **not_found("project"),
        **UNAVAILABLE,
    },
)
async def export_project(
    project: Name,
    gw: GatewayDep,
    workflow: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this workflow.")] = None,
    task: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only this task of `workflow`.")] = None,
) -> JSONResponse:
    """What `import?mode=replace` takes back unchanged: a round trip changes nothing."""
    found = await _project(gw, project)
    with _definition_errors("query"):
        return JSONResponse(dump(found, workflow, task))


# canonical resources ------------------------------------------------------------------------------


@projects.get("", response_model=ProjectList, summary="List projects", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_projects(gw: GatewayDep) -> ProjectList:
    """Every project by name, with its workflows' current definitions."""
    with db_errors():
        return ProjectList(items=await workflow_readmodels.project_views(gw.pool))


@projects.get(
    "/{project}",
    response_model=ProjectView,
    summary="Get a project",
    responses={**UNAUTHORIZED, **not_found("project"), **UNAVAILABLE},
)
async def get_project(project: Name, gw: GatewayDep) -> ProjectView:
    with db_errors():
        views = await workflow_readmodels.project_views(gw.pool, project)
    if not views:
        raise DefinitionNotFoundError(f"no project {project!r}")
    return views[0]


async def _workflow_view(gw: Gateway, project: str, workflow: str) -> WorkflowView:
    with db_errors():
        view = await workflow_readmodels.get_workflow(gw.pool, project, workflow)
    if view is None:
        raise DefinitionNotFoundError(f"no workflow {workflow!r} in project {project!r}")
    return view


@projects.get(
    "/{project}/workflows/{workflow}",
    response_model=WorkflowView,
    summary="Get a workflow's current definition",
    responses={**UNAUTHORIZED, **not_found("workflow"), **UNAVAILABLE},
)
async def get_workflow(project: Name, workflow: Name, gw: GatewayDep) -> WorkflowView:
    return await _workflow_view(gw, project, workflow)


def _workflow_document(data: Any, name: str | None) -> WorkflowDocument:
    """Seed 004's workflow object; its `name` defaults to the one in the path and must match it."""
    if isinstance(data, dict) and name is not None:
        data = {"name": name, **data}
    doc = parse_document({"context": {"project": {"name": "p", "workflows": [data]}}}).project.workflows
    assert doc is not None
    if name is not None and doc[0].name != name:
        raise DefinitionError("name", f"is {doc[0].name!r}; the path names {name!r}")
    return doc[0]


def _strip(exc: DefinitionError) -> DefinitionError:
    """Field paths of a workflow body, without the document around it."""
    field = exc.field.removeprefix("context.project.workflows[0]").removeprefix(".") or "body"
    return type(exc)(field, exc.reason)


@projects.put(
    "/{project}/workflows/{workflow}",
    response_model=WorkflowView,
    summary="Define a workflow, all of it",
    dependencies=[Depends(require_json)],
    responses={**conflict(_RUNNING), **_SEED},
)
async def put_workflow_route(
    project: Name, workflow: Name, request: Request, gw: GatewayDep, caller: Admin
) -> WorkflowView:
    """The workflow becomes exactly the body (seed 004's workflow object: `tasks`, optional `id`,
    `max_active_runs`); made, with its project, when missing. 409 while it runs."""
    with _definition_errors():
        try:
            doc = _workflow_document(await _json_body(request), workflow)
        except DefinitionError as exc:
            raise _strip(exc) from None
        await workflow_actions.change_project(
            gw, project, lambda current: put_workflow(current, project, doc), caller.name
        )
    return await _workflow_view(gw, project, workflow)


@projects.post(
    "/{project}/workflows",
    status_code=201,
    response_model=WorkflowView,
    summary="Add a workflow",
    dependencies=[Depends(require_json)],
    responses={**conflict("A workflow of that name exists."), **_SEED},
)
async def create_workflow(project: Name, request: Request, gw: GatewayDep, caller: Admin) -> JSONResponse:
    """A new workflow (seed 004's workflow object with its `name`); 409 when the name is taken."""
    with _definition_errors():
        try:
            doc = _workflow_document(await _json_body(request), None)
        except DefinitionError as exc:
            raise _strip(exc) from None

        def verb(current: Project | None) -> Change:
            if current is not None and current.workflow(doc.name) is not None:
                raise DefinitionConflict("name", f"workflow {doc.name!r} exists in project {project!r}")
            return create(
                current,
                SeedDocument.model_validate({"context": {"project": ProjectDocument(name=project, workflows=[doc])}}),
            )

        await workflow_actions.change_project(gw, project, verb, caller.name)
    view = await _workflow_view(gw, project, doc.name)
    location = f"/api/v1/projects/{project}/workflows/{doc.name}"
    return JSONResponse(view.model_dump(mode="json"), status_code=201, headers={"Location": location})


@projects.delete(
    "/{project}/workflows/{workflow}",
    status_code=204,
    response_class=Response,
    summary="Delete a workflow",
    responses={**UNAUTHORIZED, **not_found("workflow"), **conflict(_RUNNING), **UNAVAILABLE},
)
async def delete_workflow(project: Name, workflow: Name, gw: GatewayDep, caller: Admin) -> Response:
    """Its runs keep their own copy of the definition. 409 while it runs."""
    with _definition_errors():
        await workflow_actions.change_project(
            gw, project, lambda current: remove_workflow(current, project, workflow), caller.name
        )
    return Response(status_code=204)


# workflow runs ------------------------------------------------------------------------------------


def _run_outcome(run: WorkflowRun) -> Outcome:
    # No `resource`: the body is always kept for a replay (a replay reading it again would see it later).
    return Outcome(202, run, {"Location": f"/api/v1/workflow-runs/{run.id}"})


@projects.post(
    "/{project}/workflows/{workflow}/runs",
    status_code=202,
    response_model=WorkflowRun,
    summary="Start a workflow run",
    dependencies=[Depends(require_json)],
    responses={
        202: {"description": "The workflow run, queued.", "headers": REPLAYED_HEADERS},
        **not_found("workflow"),
        **conflict(f"The workflow has an active run (the message names it), or {IN_PROGRESS}."),
        **_SEED,
    },
)
async def start_workflow_run(
    project: Name,
    workflow: Name,
    request: Request,
    gw: GatewayDep,
    caller: Runner,
    body: WorkflowRunCreate | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Run the workflow's current definition (the run keeps it, whatever changes later); `task` runs only
    that task. One active run per workflow: a second start is a 409 naming the active run."""
    task = body.task if body is not None else None

    async def act(wfrun_id: str) -> Outcome:
        return _run_outcome(await workflow_actions.start_run(gw, project, workflow, task, wfrun_id, caller.name))

    return await idempotency.respond(gw, request, idempotency_key, act)


@runs.get("", response_model=WorkflowRunList, summary="List workflow runs", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_workflow_runs(
    gw: GatewayDep,
    project: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only runs of this project.")] = None,
    workflow: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only runs of this workflow.")] = None,
    status: Annotated[WorkflowRunStatus | None, Query(description="Only runs with this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> WorkflowRunList:
    """Workflow runs newest first, without their steps."""
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor)
        except ValueError as exc:
            raise invalid_input(("query", "cursor"), f"Value error, {exc}", cursor) from exc
    where = WorkflowRunFilter(project=project, workflow=workflow, status=status)
    with db_errors():
        items, total, more = await workflow_readmodels.list_runs(gw.pool, where, limit, before)
    return WorkflowRunList(items=items, total=total, next_cursor=encode_cursor(items[-1]) if more and items else None)


_404 = not_found("workflow run")


@runs.get("/{wfrun_id}", response_model=WorkflowRun, summary="Get a workflow run", responses={**UNAUTHORIZED, **_404})
async def get_workflow_run(wfrun_id: WfRunId, gw: GatewayDep) -> WorkflowRun:
    """Status, timestamps and every step: status (and seed 004's name for it), attempts, the latest run."""
    return await workflow_actions.get_run(gw, str(wfrun_id))


_ACTED = {
    202: {"description": "The workflow run.", "headers": REPLAYED_HEADERS},
    **UNAUTHORIZED,
    **_404,
    **conflict(f"The workflow run has finished, or {IN_PROGRESS}."),
    **UNAVAILABLE,
}


@runs.post(
    "/{wfrun_id}/stop", status_code=202, response_model=WorkflowRun, summary="Stop a workflow run", responses=_ACTED
)
async def stop_workflow_run(
    wfrun_id: WfRunId, request: Request, gw: GatewayDep, caller: Runner, idempotency_key: IdempotencyKey = None
) -> Response:
    """Every running step gets SIGTERM, its grace period, then SIGKILL; queued steps are cancelled; nothing
    new starts, not even a retry. 409 once the run has finished."""

    async def act(_new_id: str) -> Outcome:
        return Outcome(202, await workflow_actions.stop_run(gw, str(wfrun_id), caller.name))

    return await idempotency.respond(gw, request, idempotency_key, act)


@runs.post(
    "/{wfrun_id}/retry",
    status_code=202,
    response_model=WorkflowRun,
    summary="Retry a workflow run",
    responses={**_ACTED, **conflict("The run is still active, or it succeeded.")},
)
async def retry_workflow_run(
    wfrun_id: WfRunId, request: Request, gw: GatewayDep, caller: Runner, idempotency_key: IdempotencyKey = None
) -> Response:
    """A new run of the same definition version: the steps that succeeded (up to the first that did not)
    are kept, that one and everything after it runs again."""

    async def act(new_run_id: str) -> Outcome:
        return _run_outcome(await workflow_actions.retry_run(gw, str(wfrun_id), new_run_id, caller.name))

    return await idempotency.respond(gw, request, idempotency_key, act)


async def _hold(
    wfrun_id: uuid.UUID, step: str, hold: bool, request: Request, gw: Gateway, caller: Caller, key: str | None
) -> Response:
    async def act(_new_id: str) -> Outcome:
        return Outcome(202, await workflow_actions.hold_step(gw, str(wfrun_id), step, hold, caller.name))

    return await idempotency.respond(gw, request, key, act)


@runs.post(
    "/{wfrun_id}/steps/{step}/hold",
    status_code=202,
    response_model=WorkflowRun,
    summary="Hold off a stop of a step (seed 004's `waiting`)",
    responses=_ACTED,
)
async def hold_step(
    wfrun_id: WfRunId,
    step: Name,
    request: Request,
    gw: GatewayDep,
    caller: Runner,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A stop waits for the hold to be released, at most the step's `hold_max_s`."""
    return await _hold(wfrun_id, step, True, request, gw, caller, idempotency_key)


@runs.delete(
    "/{wfrun_id}/steps/{step}/hold",
    status_code=202,
    response_model=WorkflowRun,
    summary="Release a step's hold",
    responses=_ACTED,
)
async def release_step(wfrun_id: WfRunId, step: Name, request: Request, gw: GatewayDep, caller: Runner) -> Response:
    return await _hold(wfrun_id, step, False, request, gw, caller, None)


@runs.get(
    "/{wfrun_id}/events",
    summary="Follow a workflow run's events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "One SSE event per event of the workflow run (`id`: its stream sequence; "
            "`event`: its type, e.g. `wfrun.step_dispatched`); ends after `wfrun.finished`.",
        },
        204: {"description": "`Last-Event-ID` is at or past `wfrun.finished`: nothing more will come."},
        **UNAUTHORIZED,
        **_404,
        **UNAVAILABLE,
    },
)
async def workflow_run_events(
    wfrun_id: WfRunId,
    gw: GatewayDep,
    last_event_id_header: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID, description="Resume after this event id.")
    ] = None,
    last_event_id: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id.")
    ] = None,
) -> Response:
    """Replays what is stored, then follows live; resuming with `Last-Event-ID` delivers every later event
    exactly once."""
    after = last_event_id_header if last_event_id_header is not None else last_event_id
    body = await wfrun_events.open_events(gw, str(wfrun_id), after)
    if body is None:
        return Response(status_code=204)
    headers = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)
