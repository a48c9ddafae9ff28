"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from scriptbus.gateway import readmodels
from scriptbus.gateway.errors import DB_ERRORS
from scriptbus.gateway.schemas import Health, Readiness
from scriptbus.gateway.state import Gateway, get_gateway

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process is serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "NATS or PostgreSQL is not usable."}},
)
async def readyz(gw: Annotated[Gateway, Depends(get_gateway)]) -> JSONResponse:
    """200 when NATS is connected and PostgreSQL answers with the runs table in place; else 503 with
    which check failed."""
    checks = {"nats": "ok" if gw.nc.is_connected else "not connected", "postgres": "ok"}
    try:
        await readmodels.check_ready(gw.pool)
    except (*DB_ERRORS, LookupError) as exc:
        checks["postgres"] = str(exc) or type(exc).__name__
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
