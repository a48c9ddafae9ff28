"""The FastAPI application and the wiring of its connections, done in the lifespan (never at import)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from scriptbus.events.files import ensure_file_stores
from scriptbus.events.lifecycle import Stopped, close_bus, connect_bus_unless_stopped, settle_heap
from scriptbus.gateway import (
    artifacts,
    commands,
    console,
    docs,
    executors,
    fanouts,
    files,
    health,
    readmodels,
    runs,
    schedules,
    secrets,
    tokens,
    workflows,
)
from scriptbus.gateway.body_limit import BodyLimit
from scriptbus.gateway.cross_site import CrossSiteGuard
from scriptbus.gateway.errors import GatewayError, validation_errors
from scriptbus.gateway.projection import ProjectionWatcher
from scriptbus.gateway.settings import GatewaySettings
from scriptbus.gateway.state import Gateway
from scriptbus.gateway.token_table import TokenTable

log = logging.getLogger(__name__)

DESCRIPTION = """
Run bash scripts on demand. Every change is an event in NATS JetStream; reads come from PostgreSQL
read models that the recorder projects from those events.

A write (`POST`, `DELETE`) answers once the read models show it, so a read right after it sees it.
Output is stored as raw bytes: `GET /api/v1/runs/{id}/output` returns them exactly, and with
`?follow=true` keeps streaming live until the run ends.

Saved commands (`/api/v1/commands`) are named scripts, found by id or name, that runs start from
with their own `args`. `GET /api/v1/runs/{id}/events` follows everything about a run as Server-Sent
Events, resumable with `Last-Event-ID`.

Every `POST` accepts `Idempotency-Key`: the same key with the same request within 24 h gets the
original response (with `Idempotent-Replayed: true`) and acts only once.

Tokens carry a role: `read` sees everything, `run` also starts and stops runs and workflow runs,
`admin` also manages saved commands, workflows, tokens and executors, and deletes runs. Once any token
exists (`SCRIPTBUS_API_TOKENS`, or one made with `POST /api/v1/tokens`), every `/api` route, `/docs` and
`/openapi.json` need `Authorization: Bearer <token>` (and `/metrics` too, except from this machine); a
token whose role is too low gets a 403 naming the role needed. `Idempotency-Key`s are kept per token.
"""


def create_app(settings: GatewaySettings, shutdown: asyncio.Event | None = None) -> FastAPI:
    """The gateway app. Connections open when it starts serving; `shutdown`, when set (on SIGTERM),
    ends live output streams so the server can stop promptly."""
    stop = shutdown if shutdown is not None else asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secrets_key = secrets.public_key(settings)
        log.info("connecting to NATS at %s (prefix %s)", settings.nats_url, settings.prefix)
        try:
            nc, js, subjects = await connect_bus_unless_stopped(settings, "scriptbus-gateway", stop)
        except Stopped:
            # Not an error: the server sees the stop and shuts down without serving.
            log.info("stopped before NATS was reachable")
            yield
            return
        token_table = TokenTable()
        try:
            # Made here: executors write artifacts but may not create a stream.
            await ensure_file_stores(js, subjects)
            await token_table.follow(js, subjects)
        except BaseException:
            await close_bus(nc)
            raise
        pool = await readmodels.create_pool(settings.database_url)
        watcher = ProjectionWatcher(settings.database_url, pool)
        watcher.start()
        app.state.gateway = Gateway(
            settings=settings,
            nc=nc,
            js=js,
            subjects=subjects,
            pool=pool,
            watcher=watcher,
            shutdown=stop,
            secrets_key=secrets_key,
            tokens=token_table,
        )
        settle_heap()
        log.info("gateway ready on http://%s:%d", settings.host, settings.port)
        try:
            yield
        finally:
            stop.set()
            await watcher.stop()
            await token_table.close()
            await close_bus(nc)
            try:
                await asyncio.wait_for(pool.close(), 5)
            except TimeoutError:
                pool.terminate()
            log.info("gateway stopped")

    app = FastAPI(
        title="scriptbus",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by `docs.router` instead: under the API's rule, with local assets (FastAPI's load a CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.add_middleware(BodyLimit)
    app.add_middleware(CrossSiteGuard)
    app.include_router(runs.router)
    app.include_router(artifacts.router)
    app.include_router(files.router)
    app.include_router(commands.router)
    app.include_router(executors.router)
    app.include_router(secrets.router)
    app.include_router(tokens.router)
    app.include_router(workflows.projects)
    app.include_router(workflows.runs)
    app.include_router(fanouts.router)
    app.include_router(schedules.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(console.router)

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler would echo every input whole, and fail on one it cannot encode.
        return JSONResponse({"detail": validation_errors(exc)}, status_code=422)

    return app
