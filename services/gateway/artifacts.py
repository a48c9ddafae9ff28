"""A run's artifacts over HTTP: the list its `run.finished` gave (from the read model) and each file's
bytes streamed from the artifacts store; deleting a run deletes them."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import StreamingResponse

from scriptbus.events.files import Artifact, artifact_object, delete_object
from scriptbus.gateway.auth import Role, need
from scriptbus.gateway.errors import RunNotFound, db_errors
from scriptbus.gateway.file_schemas import ArtifactList
from scriptbus.gateway.files import STORE_ERRORS, FileNotFound, checked_name, download, stored
from scriptbus.gateway.openapi import INVALID, UNAUTHORIZED, UNAVAILABLE, not_found
from scriptbus.gateway.state import Gateway, get_gateway

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Depends(need(Role.read))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
RunId = Annotated[uuid.UUID, Path(description="The run's id, a UUID.")]


async def listed(gw: Gateway, run_id: str) -> list[Artifact] | None:
    """The run's artifacts as its `run.finished` listed them; None when there is no such run."""
    with db_errors():
        row = await gw.pool.fetchval("SELECT artifacts FROM runs WHERE id = $1", uuid.UUID(run_id))
    if row is None:
        return None
    return [Artifact.model_validate(a) for a in (json.loads(row) if isinstance(row, str) else row)]


async def delete_all(gw: Gateway, run_id: str, artifacts: list[Artifact] | None) -> None:
    """Delete a deleted run's artifacts from the store. Best effort: the run is already gone."""
    for artifact in artifacts or []:
        try:
            await delete_object(gw.js, gw.subjects.artifacts_bucket, artifact_object(run_id, artifact.path))
        except STORE_ERRORS as exc:
            log.warning("run %s: artifact %s not deleted: %s", run_id, artifact.path, exc)


@router.get(
    "/{run_id}/artifacts",
    response_model=ArtifactList,
    summary="List a run's artifacts",
    responses={**UNAUTHORIZED, **not_found("run"), **UNAVAILABLE},
)
async def list_artifacts(run_id: RunId, gw: GatewayDep) -> ArtifactList:
    """Path, size and sha256 of each file the run's `artifacts` patterns kept (empty until it finishes)."""
    artifacts = await listed(gw, str(run_id))
    if artifacts is None:
        raise RunNotFound(f"run {run_id} not found")
    return ArtifactList(run_id=str(run_id), artifacts=artifacts)


@router.get(
    "/{run_id}/artifacts/{path:path}",
    summary="Get an artifact's bytes (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        **UNAUTHORIZED,
        **not_found("run or artifact"),
        **INVALID,
        **UNAVAILABLE,
    },
)
async def get_artifact(run_id: RunId, path: str, gw: GatewayDep) -> StreamingResponse:
    """The artifact's exact bytes; `ETag` and `X-Content-SHA256` carry its sha256."""
    checked_name(path, ("path", "path"))
    info = await stored(gw, gw.subjects.artifacts_bucket, artifact_object(str(run_id), path))
    if info is None:
        raise FileNotFound(f"run {run_id} has no artifact {path!r}")
    return download(gw, info)
