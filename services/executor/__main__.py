"""`python -m scriptbus.executor` / `scriptbus executor`: the agent that runs scripts on this host."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from scriptbus.events.lifecycle import run_service
from scriptbus.executor.settings import ExecutorSettings, parse_labels


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scriptbus executor",
        description="Pull run requests for this host's pools over NATS and run them with bash.",
    )
    p.add_argument("--host", help="this executor's host token (default: the hostname)")
    p.add_argument(
        "--pool",
        action="append",
        dest="pools",
        metavar="POOL",
        help="a pool to serve (repeatable; default: default)",
    )
    p.add_argument("--label", action="append", dest="labels", metavar="K=V", help="a label to report (repeatable)")
    p.add_argument(
        "--max-concurrency", type=int, help="most runs at once (default: sized from memory, open files and pids)"
    )
    p.add_argument(
        "--run-as",
        metavar="USER",
        help="when run as root, run scripts as USER (default: the system user scriptbus-run, created when "
        "missing; `root` opts out of the isolation)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    """Parse flags (they override `SCRIPTBUS_*`) and serve until SIGTERM/SIGINT."""
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.pools:
        overrides["pools"] = args.pools
    if args.labels:
        try:
            overrides["labels"] = parse_labels(args.labels)
        except ValueError as exc:
            _parser().error(str(exc))
    if args.max_concurrency is not None:
        overrides["max_concurrency"] = args.max_concurrency
    if args.run_as is not None:
        overrides["executor_run_as"] = args.run_as
    try:
        settings = ExecutorSettings(**overrides)
    except ValidationError as exc:
        _parser().error(f"invalid settings: {exc}")
    from scriptbus.executor.service import serve

    run_service("executor", settings, lambda stop: serve(settings, stop))


if __name__ == "__main__":
    main()
