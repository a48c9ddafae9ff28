"""`python -m scriptbus.recorder` / `scriptbus recorder`: project the events stream into PostgreSQL."""

from __future__ import annotations

import argparse

from scriptbus.events.lifecycle import run_service
from scriptbus.recorder.settings import RecorderSettings
from scriptbus.recorder.worker import run_recorder


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
    run_service(
        "recorder",
        settings,
        lambda stop: run_recorder(settings, stop, rebuild=args.rebuild, exit_when_caught_up=args.exit_when_caught_up),
    )


if __name__ == "__main__":
    main()
