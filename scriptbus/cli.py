"""The `scriptbus` console command: one entry point for the services, `up`, and the client."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import version

SERVICES = ("gateway", "executor", "recorder", "scheduler")
# Kept in step with scriptbus.client.CLIENT_COMMANDS, without importing the client for the services.
CLIENT = (
    "run",
    "ps",
    "show",
    "logs",
    "stop",
    "rm",
    "commands",
    "executors",
    "wf",
    "secrets",
    "tokens",
    "files",
    "cp",
    "fanouts",
    "schedules",
)

USAGE = """usage: scriptbus <command> [options]

system:
  up          start nats-server, PostgreSQL and all four services (the embedded default)
  gateway     the REST API
  executor    the agent that runs scripts on this host
  recorder    projects the event stream into PostgreSQL
  scheduler   watches executors (and, later, workflows)
  nats-user   a NATS credential for an executor on another host (nats-user executor --host H --pools a,b)

client (talks to the REST API: --api URL or SCRIPTBUS_API, --token T or SCRIPTBUS_TOKEN, --json):
  run         run a script (inline, -f FILE or --command NAME) and follow its output;
              --all [--pool P] [--label k=v] [--host H]: on every matching executor, lines prefixed by host
  ps          list runs (queued and running; --all for finished ones too)
  show        one run in full
  logs        a run's output (-f follows it live)
  stop        stop a run
  rm          forget a finished run
  commands    saved commands: list, show, create, edit, rm
  executors   the fleet: hosts, state, pools, load
  secrets     write-only secrets for runs: set NAME (value from stdin or a prompt), list, rm
  wf          projects and workflows, seed 004's verbs: select-project, create, update, delete, dump,
              run (--follow), stop, status (--format spad), set-status, retry, follow, ps
  files       files runs get in their folder: put LOCAL [NAME], get NAME [DEST], ls, rm NAME
  cp          copy a file to or from a host, as a run on it: cp ./tool.sh build-1:/opt/bin/
  fanouts     fan-outs (`run --all`): list, show, stop, retry (reruns the hosts that failed)
  tokens      API tokens with roles: create --role read|run|admin --name N (printed once), list, revoke ID
  schedules   run a command or workflow on a schedule: create NAME --cron EXPR|--every S --command C|--workflow P/W
              [--overlap skip|allow|queue] [--catch-up last|none] [--timezone Z], list, show, pause, resume, rm

Run `scriptbus <command> --help` for a command's options; `scriptbus --version` prints the version.
"""


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    command, rest = args[0], args[1:]
    if command in ("--version", "-V"):
        print(f"scriptbus {version('scriptbus')}")
        sys.exit(0)
    if command in CLIENT or command.startswith("--"):
        # Client commands, also with global options first: `scriptbus --json ps`.
        from scriptbus.client import main as client_main

        client_main(args)
    elif command in SERVICES:
        module = importlib.import_module(f"scriptbus.{command}.__main__")
        module.main(rest)
    elif command == "up":
        from scriptbus.up import main as up_main

        up_main(rest)
    elif command == "nats-user":
        from scriptbus.nats_user import main as nats_user_main

        nats_user_main(rest)
    else:
        print(f"scriptbus: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
