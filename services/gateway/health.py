"""Liveness and readiness probes, and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from scriptbus.gateway import metrics, readmodels
from scriptbus.gateway.auth import require_token_off_loopback
from scriptbus.gateway.errors import DB_ERRORS
from scriptbus.gateway.openapi import UNAUTHORIZED, UNAVAILABLE
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


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(require_token_off_loopback)],
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text format: scriptbus_runs_requested_total{pool}, "
            "scriptbus_runs_started_total{host}, scriptbus_runs_finished_total{status}, "
            "scriptbus_runs_active{status}, scriptbus_queue_depth{target}, scriptbus_output_bytes_total, "
            "scriptbus_run_duration_seconds (histogram), scriptbus_executor_capacity{host}, "
            "scriptbus_executor_running{host}, scriptbus_executors{state}, scriptbus_recorder_lag_messages.",
        },
        **UNAUTHORIZED,
        **UNAVAILABLE,
    },
)
async def get_metrics(gw: Annotated[Gateway, Depends(get_gateway)]) -> Response:
    """Counters, gauges and the run-duration histogram, read at scrape time. No token is needed from this
    machine; from elsewhere, the same bearer token as `/api`."""
    return Response(await metrics.scrape(gw), media_type=CONTENT_TYPE_LATEST)
