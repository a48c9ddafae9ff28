"""`python -m scriptbus.gateway [--host H] [--port P]`: serve the REST API with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn

from scriptbus.gateway.app import create_app
from scriptbus.gateway.auth import exposure_error
from scriptbus.gateway.settings import GatewaySettings

log = logging.getLogger("scriptbus.gateway")


class _Server(uvicorn.Server):
    """uvicorn's server with our own signal handling: SIGTERM/SIGINT set the shutdown event (live output
    streams end at once instead of holding the graceful shutdown open) and the process then exits 0,
    where uvicorn would re-raise the signal and die by it."""

    def __init__(self, config: uvicorn.Config, shutdown: asyncio.Event) -> None:
        super().__init__(config)
        self._shutdown = shutdown

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        if self.should_exit and sig == signal.SIGINT:
            # A second Ctrl-C: stop waiting for open connections.
            self.force_exit = True
        log.info("%s: shutting down", signal.Signals(sig).name)
        self._shutdown.set()
        self.should_exit = True


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
