"""`scriptbus scheduler`: watches executor heartbeats (and, later, drives workflow runs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from scriptbus.scheduler.settings import SchedulerSettings
from scriptbus.scheduler.worker import run


async def _main(settings: SchedulerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scriptbus scheduler", description=__doc__)
    parser.add_argument("--lost-after", type=float, help="seconds of heartbeat silence before an executor is lost")
    args = parser.parse_args(argv)
    settings = SchedulerSettings()
    if args.lost_after is not None:
        settings = settings.model_copy(update={"executor_lost_after_s": args.lost_after})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
