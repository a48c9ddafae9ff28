"""`python -m scriptbus.gateway [--host H] [--port P]`: serve the REST API with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator

import uvicorn

from scriptbus.events.lifecycle import run_service
from scriptbus.events.secret_box import SecretKeyError
from scriptbus.gateway import secrets
from scriptbus.gateway.app import create_app
from scriptbus.gateway.auth import exposure_error
from scriptbus.gateway.settings import GatewaySettings


def fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for the gateway, or None (asyncio's) where uvloop cannot be imported.
    The gateway only: the executor measured slower on uvloop (issue 9)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


KEEP_ALIVE_S = 75


def fast_http() -> str:
    """httptools' HTTP parser when it can be imported (cheaper per request than h11), else h11."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: the service skeleton owns SIGTERM/SIGINT, and
    its stop event ends live output streams at once instead of holding the graceful shutdown open."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: GatewaySettings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set."""
    config = uvicorn.Config(
        create_app(settings, stop),
        host=settings.host,
        port=settings.port,
        # The loop is run_service's (uvloop from `fast_loop` when available); uvicorn only serves on it.
        loop="none",
        http=fast_http(),
        log_config=None,
        access_log=False,
        lifespan="on",
        # Longer than clients keep idle connections (httpx and aiohttp 5 s, requests forever): a server that
        # closes first races a client reusing the connection, which then fails with no response.
        timeout_keep_alive=KEEP_ALIVE_S,
        # Within the skeleton's shutdown deadline, so open requests get their answers before it.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout_s / 2)),
    )
    server = _Server(config)

    async def exit_on_stop() -> None:
        await stop.wait()
        server.should_exit = True

    stopping = asyncio.create_task(exit_on_stop())
    try:
        await server.serve()
    finally:
        stopping.cancel()


def main(argv: list[str] | None = None) -> None:
    """Parse flags, refuse an unauthenticated non-loopback address, and run the gateway."""
    parser = argparse.ArgumentParser(prog="scriptbus gateway", description="The scriptbus REST API.")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1, SCRIPTBUS_GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080, SCRIPTBUS_GATEWAY_PORT)")
    args = parser.parse_args(argv)

    settings = GatewaySettings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    problem = exposure_error(settings)
    if problem:
        print(f"scriptbus gateway: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        secrets.public_key(settings)  # a bad key file is said here, in one line, before anything starts
    except SecretKeyError as exc:
        print(f"scriptbus gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    run_service("gateway", settings, lambda stop: serve(settings, stop), loop_factory=fast_loop())


if __name__ == "__main__":
    main()
