"""The `scriptbus` console command: one entry point for the services, `up`, and the client."""

from __future__ import annotations

import importlib
import sys

SERVICES = ("gateway", "executor", "recorder", "scheduler")

USAGE = """usage: scriptbus <command> [options]

system:
  up          start nats-server, PostgreSQL and all four services (the embedded default)
  gateway     the REST API
  executor    the agent that runs scripts on this host
  recorder    projects the event stream into PostgreSQL
  scheduler   watches executors (and, later, workflows)

Run `scriptbus <command> --help` for a command's options.
"""


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command in SERVICES:
        module = importlib.import_module(f"scriptbus.{command}.__main__")
        module.main(rest)
    elif command == "up":
        from scriptbus.up import main as up_main

        up_main(rest)
    else:
        print(f"scriptbus: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
