"""`python -m scriptbus.gateway [--host H] [--port P]`: serve the REST API with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from types import FrameType

import uvicorn

from scriptbus.gateway.app import create_app
from scriptbus.gateway.auth import exposure_error
from scriptbus.gateway.settings import GatewaySettings

log = logging.getLogger("scriptbus.gateway")


class _Server(uvicorn.Server):
    """uvicorn's server, with SIGTERM/SIGINT also setting our shutdown event: live output streams end
    at once instead of holding the graceful shutdown open."""

    def __init__(self, config: uvicorn.Config, shutdown: asyncio.Event) -> None:
        super().__init__(config)
        self._shutdown = shutdown
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._shutdown.set)
        super().handle_exit(sig, frame)


async def serve(settings: GatewaySettings) -> None:
    """Serve until SIGTERM or SIGINT."""
    shutdown = asyncio.Event()
    config = uvicorn.Config(
        create_app(settings, shutdown),
        host=settings.host,
        port=settings.port,
        loop="asyncio",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    await _Server(config, shutdown).serve()


def main(argv: list[str] | None = None) -> None:
    """Parse flags, refuse an unauthenticated non-loopback address, and run the gateway."""
    parser = argparse.ArgumentParser(prog="scriptbus gateway", description="The scriptbus REST API.")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1, SCRIPTBUS_GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080, SCRIPTBUS_GATEWAY_PORT)")
    args = parser.parse_args(argv)

    settings = GatewaySettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    problem = exposure_error(settings)
    if problem:
        log.error("%s", problem)
        sys.exit(2)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
