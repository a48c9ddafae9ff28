"""`python -m scriptbus.recorder` / `scriptbus recorder`: project the events stream into PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from scriptbus.recorder.settings import RecorderSettings
from scriptbus.recorder.worker import run_recorder


async def _serve(settings: RecorderSettings, rebuild: bool, exit_when_caught_up: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_recorder(settings, stop, rebuild=rebuild, exit_when_caught_up=exit_when_caught_up)


def main(argv: list[str] | None = None) -> None:
    """Parse the recorder's flags and run it until SIGTERM/SIGINT (or until caught up, if asked)."""
    parser = argparse.ArgumentParser(
        prog="scriptbus recorder",
        description="Project the events stream into the PostgreSQL read models (the only writer).",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="drop the read models, re-apply the migrations and replay the whole stream from seq 1",
    )
    parser.add_argument(
        "--exit-when-caught-up",
        action="store_true",
        help="exit once every message in the stream at start-up is applied",
    )
    args = parser.parse_args(argv)
    settings = RecorderSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(settings, args.rebuild, args.exit_when_caught_up))


if __name__ == "__main__":
    main()
