"""`scriptbus scheduler`: watches executor heartbeats (and, later, drives workflow runs)."""

from __future__ import annotations

import argparse

from scriptbus.events.lifecycle import run_service
from scriptbus.scheduler.settings import SchedulerSettings
from scriptbus.scheduler.worker import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scriptbus scheduler", description=__doc__)
    parser.add_argument("--lost-after", type=float, help="seconds of heartbeat silence before an executor is lost")
    args = parser.parse_args(argv)
    settings = SchedulerSettings()
    if args.lost_after is not None:
        settings = settings.model_copy(update={"executor_lost_after_s": args.lost_after})
    run_service("scheduler", settings, lambda stop: run(settings, stop))


if __name__ == "__main__":
    main()
