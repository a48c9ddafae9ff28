"""The client's subcommands (`run`, `ps`, `show`, `logs`, `stop`, `rm`, `commands …`, `executors`):
argparse definitions and one handler each. Handlers return the exit status; failures are raised as
`ClientError` and printed as one line by `main`."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from scriptbus.client import render
from scriptbus.client.api import DEFAULT_API, Api, ClientError, is_full_id
from scriptbus.client.follow import TERMINAL, InterruptGuard, RunFollower, exit_status
from scriptbus.client.spinner import Spinner
from scriptbus.client.verbs import verb_group

CLIENT_COMMANDS = (
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
ACTIVE = ("queued", "running", "stopping")
# The API's largest page.
_PAGE = 1000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(ClientError):
    """Wrong or missing options: exit status 2, like argparse's own."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


@dataclass
class Context:
    api: Api
    json: bool
    # Colour and width of what goes to stdout; stderr gets its own check.
    colour: bool
    width: int


# -- parsing helpers (pure) ---------------------------------------------------------------------


def parse_env(items: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`K=V` pairs into a dict; a bare `K` takes this shell's value of K (as `docker run -e K` does)."""
    env: dict[str, str] = {}
    local = os.environ if environ is None else environ
    for item in items or ():
        name, eq, value = item.partition("=")
        if not name:
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        if not eq:
            if name not in local:
                raise UsageError(f"--env {name}: no value given and {name} is not set here")
            value = local[name]
        env[name] = value
    return env


def parse_seconds(text: str) -> float:
    """`90`, `90s`, `1.5m`, `2h`, `1d`, `500ms` as seconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 90s, 5m, 2h)")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def read_script(path: str) -> str:
    """The script in `path` (`-` for stdin) as text."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start})") from exc


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _is_tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# -- run ----------------------------------------------------------------------------------------


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    from scriptbus.client import fanouts

    fanouts.check_run_all(args)
    if args.all:
        return fanouts.run_all(ctx, args)
    words = list(args.words)
    if args.command and args.file:
        raise UsageError("give either --command or -f, not both")
    body: dict[str, Any] = {"args": words}
    env = parse_env(args.env)
    if env:
        body["env"] = env
    if args.secret:
        body["secrets"] = args.secret
    if args.use_file:
        body["files"] = args.use_file
    if args.artifact:
        body["artifacts"] = args.artifact
    for key, value in (
        ("description", args.description),
        ("timeout_s", args.timeout),
        ("stop_grace_s", args.stop_grace),
        ("pool", args.pool),
        ("host", args.host[0] if args.host else None),
    ):
        if value is not None:
            body[key] = value
    if args.command:
        run = ctx.api.run_command(args.command, body)
    else:
        if args.file:
            script = read_script(args.file)
        elif words:
            script = words.pop(0)
        else:
            raise UsageError("nothing to run: give a script, -f FILE or --command NAME")
        run = ctx.api.create_run({"script": script, **body})
    if args.detach:
        if ctx.json:
            _print_json(run)
        else:
            print(run["id"])
        return 0
    return follow_run(ctx, run, args.stop_on_interrupt)


def follow_run(ctx: Context, run: dict[str, Any], stop_on_interrupt: bool) -> int:
    """Stream the run's output to our stdout/stderr until it ends; the exit status mirrors the script's."""
    run_id = str(run["id"])
    spinner: Spinner | None = None
    if _is_tty(sys.stderr):
        reason = str(run.get("reason") or "") or "waiting for an executor"
        spinner = Spinner(sys.stderr, f"queued: {reason} (run {run_id[:8]}; Ctrl-C to stop or detach)")

    def on_state(state: str) -> None:
        if spinner is None:
            return
        if state == "queued":
            spinner.start()
        else:
            spinner.stop()

    guard = InterruptGuard()
    follower = RunFollower(ctx.api, run_id, sys.stdout.buffer, sys.stderr.buffer, on_state=on_state, guard=guard)
    sys.stdout.flush()
    stopping = False
    with guard:
        while True:
            try:
                outcome = follower.follow()
                break
            except KeyboardInterrupt:
                if spinner:
                    spinner.stop()
                if not stopping and (stop_on_interrupt or _confirm(f"stop run {run_id}? [y/N] ")):
                    stopping = True
                    _stop_quietly(ctx.api, run_id)
                    continue
                print(
                    f"\nscriptbus: detached; run {run_id} goes on. Reattach with: scriptbus logs -f {run_id}",
                    file=sys.stderr,
                )
                return 130
    code, line = exit_status(outcome)
    if line:
        print(f"scriptbus: run {run_id[:8]} {line}", file=sys.stderr)
    return code


def _confirm(question: str) -> bool:
    """Ask on the terminal; no terminal (or Ctrl-C, or end of input) means no."""
    if not (_is_tty(sys.stdin) and _is_tty(sys.stderr)):
        return False
    try:
        sys.stderr.write("\n" + question)
        sys.stderr.flush()
        answer = sys.stdin.readline()
    except (KeyboardInterrupt, EOFError):
        return False
    return answer.strip().lower() in ("y", "yes")


def _stop_quietly(api: Api, run_id: str) -> None:
    try:
        run = api.stop_run(run_id)
    except ClientError as exc:
        if exc.status == 409:
            # It finished meanwhile; following on shows how.
            return
        raise
    what = "cancelled" if run.get("status") == "cancelled" else "stopping"
    print(f"scriptbus: {what} run {run_id}", file=sys.stderr)


# -- ps, show, logs, stop, rm ---------------------------------------------------------------------


def list_runs(api: Api, filters: dict[str, Any], limit: int) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` runs (newest first) matching `filters`, paging as needed, and how many match."""
    items: list[dict[str, Any]] = []
    total = 0
    cursor: str | None = None
    while len(items) < limit:
        page_size = min(_PAGE, limit - len(items))
        if cursor:
            page = api.list_runs(**filters, limit=page_size, cursor=cursor)
        else:
            page = api.list_runs(**filters, limit=page_size, offset=len(items))
        total = int(page.get("total", 0))
        batch = page.get("items", [])
        items += batch
        cursor = page.get("next_cursor")
        if not batch or len(items) >= total:
            break
    return items[:limit], total


def cmd_ps(ctx: Context, args: argparse.Namespace) -> int:
    filters: dict[str, Any] = {"host": args.host, "pool": args.pool}
    if args.command:
        ref = args.command
        filters["command_id"] = ref if is_full_id(ref) else ctx.api.get_command(ref)["id"]
    statuses: Sequence[str | None]
    if args.status:
        statuses = [args.status]
    elif args.all:
        statuses = [None]
    else:
        statuses = ACTIVE
    return print_listing(
        ctx,
        args,
        statuses,
        lambda status: list_runs(ctx.api, {**filters, "status": status}, args.limit),
        render.runs_table,
        "no queued or running runs",
    )


def print_listing(
    ctx: Context,
    args: argparse.Namespace,
    statuses: Sequence[str | None],
    fetch: Callable[[str | None], tuple[list[dict[str, Any]], int]],
    table: Callable[[list[dict[str, Any]], bool, int], str],
    nothing_active: str,
) -> int:
    """`ps` of runs or workflow runs: what `fetch` finds for each of `statuses` (None: any), newest first,
    at most `--limit`, as JSON or a table, saying on stderr what was left out or why it is empty."""
    runs: list[dict[str, Any]] = []
    total = 0
    for status in statuses:
        found, count = fetch(status)
        runs += found
        total += count
    runs.sort(key=lambda r: (str(r.get("created_at", "")), str(r.get("id", ""))), reverse=True)
    runs = runs[: args.limit]
    if ctx.json:
        _print_json({"items": runs, "total": total})
        return 0
    print(table(runs, ctx.colour, ctx.width))
    if total > len(runs):
        print(f"({len(runs)} of {total} shown; --limit N shows more)", file=sys.stderr)
    elif not runs and not args.all and not args.status:
        print(f"({nothing_active}; --all shows finished ones too)", file=sys.stderr)
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    run = ctx.api.get_run(ctx.api.resolve_run(args.id))
    if ctx.json:
        _print_json(run)
    else:
        print(render.run_details(run, ctx.colour))
    return 0


def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    run_id = ctx.api.resolve_run(args.id)
    sys.stdout.flush()
    if not args.follow:
        run = ctx.api.get_run(run_id)
        if run["status"] not in TERMINAL:
            # What is stored so far, each stream to its own place.
            for stream, target in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)):
                if args.stream in (None, stream):
                    (sys.stdout.buffer if args.stream else target).write(ctx.api.output(run_id, stream))
            sys.stdout.buffer.flush()
            return 0
    # Following a finished run replays it in the order it was written and ends.
    follower = RunFollower(ctx.api, run_id, sys.stdout.buffer, sys.stderr.buffer, only=args.stream)
    with InterruptGuard():
        try:
            follower.follow()
        except KeyboardInterrupt:
            return 130
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    run_id = ctx.api.resolve_run(args.id)
    run = ctx.api.stop_run(run_id)
    if ctx.json:
        _print_json(run)
    elif run.get("status") == "cancelled":
        print(f"cancelled {run_id} (it had not started)")
    else:
        print(f"stopping {run_id}")
    return 0


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    run_id = ctx.api.resolve_run(args.id)
    ctx.api.delete_run(run_id)
    if ctx.json:
        _print_json({"id": run_id, "deleted": True})
    else:
        print(f"deleted {run_id}")
    return 0


# -- commands ------------------------------------------------------------------------------------

_COMMAND_FIELDS = ("name", "description", "script", "env", "secrets", "timeout_s", "stop_grace_s", "pool")


def _command_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The fields the options of `commands create|edit` set."""
    if args.file and args.script is not None:
        raise UsageError("give either -f FILE or --script, not both")
    changes: dict[str, Any] = {}
    if args.file:
        changes["script"] = read_script(args.file)
    elif args.script is not None:
        changes["script"] = args.script
    if args.env is not None:
        changes["env"] = parse_env(args.env)
    if args.secret is not None:
        changes["secrets"] = args.secret
    for key, value in (
        ("description", args.description),
        ("timeout_s", args.timeout),
        ("stop_grace_s", args.stop_grace),
        ("pool", args.pool),
    ):
        if value is not None:
            changes[key] = value
    if getattr(args, "no_timeout", False):
        changes["timeout_s"] = None
    return changes


def cmd_commands_list(ctx: Context, args: argparse.Namespace) -> int:
    items: list[dict[str, Any]] = []
    while True:
        page = ctx.api.list_commands(q=args.q, limit=_PAGE, offset=len(items))
        batch = page.get("items", [])
        items += batch
        if not batch or len(items) >= int(page.get("total", 0)):
            break
    if ctx.json:
        _print_json({"items": items, "total": len(items)})
    else:
        print(render.commands_table(items, ctx.colour, ctx.width))
    return 0


def cmd_commands_show(ctx: Context, args: argparse.Namespace) -> int:
    command = ctx.api.get_command(args.name)
    if ctx.json:
        _print_json(command)
    else:
        print(render.command_details(command, ctx.colour))
    return 0


def cmd_commands_create(ctx: Context, args: argparse.Namespace) -> int:
    changes = _command_changes(args)
    if "script" not in changes:
        raise UsageError("a command needs a script: -f FILE or --script S")
    command = ctx.api.create_command({"name": args.name, **changes})
    if ctx.json:
        _print_json(command)
    else:
        print(f"created command {command['name']} ({command['id']})")
    return 0


def cmd_commands_edit(ctx: Context, args: argparse.Namespace) -> int:
    changes = _command_changes(args)
    if args.rename:
        changes["name"] = args.rename
    current = ctx.api.get_command(args.name)
    if not changes:
        if not (_is_tty(sys.stdin) and _is_tty(sys.stdout)):
            raise UsageError("nothing to change: give options (see --help), or run on a terminal to open $EDITOR")
        script = edit_text(str(current.get("script") or ""), suffix=".sh")
        if script == current.get("script"):
            print("no changes", file=sys.stderr)
            return 0
        if not script.strip():
            raise ClientError("the script is empty; nothing saved")
        changes["script"] = script
    body = {key: current.get(key) for key in _COMMAND_FIELDS}
    body.update(changes)
    command = ctx.api.replace_command(str(current["id"]), body)
    if ctx.json:
        _print_json(command)
    else:
        print(f"updated command {command['name']} (version {command.get('version', '?')})")
    return 0


def edit_text(text: str, suffix: str = ".txt") -> str:
    """Open `$VISUAL`/`$EDITOR` (else vi) on `text` in a temporary file; return what was saved."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, path = tempfile.mkstemp(prefix="scriptbus-", suffix=suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            result = subprocess.run([*shlex.split(editor), path], check=False)
        except OSError as exc:
            raise ClientError(f"cannot start the editor {editor!r}: {exc.strerror or exc}") from exc
        if result.returncode != 0:
            raise ClientError(f"the editor {editor!r} exited with {result.returncode}; nothing saved")
        with open(path) as f:
            return f.read()
    finally:
        os.unlink(path)


def cmd_commands_rm(ctx: Context, args: argparse.Namespace) -> int:
    ctx.api.delete_command(args.name)
    if ctx.json:
        _print_json({"name": args.name, "deleted": True})
    else:
        print(f"deleted command {args.name}")
    return 0


# -- executors -----------------------------------------------------------------------------------


def cmd_executors(ctx: Context, args: argparse.Namespace) -> int:
    fleet = ctx.api.executors()
    if ctx.json:
        _print_json(fleet)
    else:
        print(render.executors_table(fleet.get("items", []), ctx.colour))
    return 0


# -- the parser ----------------------------------------------------------------------------------


def _global_options(top: bool) -> argparse.ArgumentParser:
    # On the subcommands the defaults are SUPPRESS so that `scriptbus --json ps` is not undone by
    # the subcommand's own default.
    p = argparse.ArgumentParser(add_help=False)
    suppress = argparse.SUPPRESS
    g = p.add_argument_group("connection and output")
    g.add_argument(
        "--api",
        metavar="URL",
        default=None if top else suppress,
        help=f"the gateway (env SCRIPTBUS_API, default {DEFAULT_API})",
    )
    g.add_argument("--token", metavar="T", default=None if top else suppress, help="bearer token (env SCRIPTBUS_TOKEN)")
    g.add_argument("--json", action="store_true", default=False if top else suppress, help="machine-readable output")
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description", "-d", metavar="TEXT", help="shown in lists")
    p.add_argument(
        "--env",
        "-e",
        action="append",
        metavar="K=V",
        help="environment variable (repeatable; bare K copies yours)",
    )
    p.add_argument(
        "--secret",
        "-S",
        action="append",
        metavar="NAME",
        help="a secret (see `scriptbus secrets`) the script gets as $NAME (repeatable)",
    )
    p.add_argument("--timeout", type=parse_seconds, metavar="DURATION", help="e.g. 90, 90s, 5m, 2h")
    p.add_argument(
        "--stop-grace",
        type=parse_seconds,
        metavar="DURATION",
        help="time between SIGTERM and SIGKILL on stop",
    )
    p.add_argument("--pool", help="executor pool (default: default, or the command's)")


def build_parser() -> argparse.ArgumentParser:
    common = _global_options(top=False)
    parser = argparse.ArgumentParser(
        prog="scriptbus",
        description="The scriptbus command-line client.",
        parents=[_global_options(top=True)],
    )
    sub = parser.add_subparsers(dest="cmd", metavar="<command>", required=True)

    def add(name: str, handler: Callable[[Context, argparse.Namespace], int], **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], **kw)
        p.set_defaults(handler=handler)
        return p

    p = add(
        "run",
        cmd_run,
        help="run a script and follow its output",
        description="Start a run and follow its output: stdout and stderr bytes land on ours, and the "
        "exit status is the script's (128+N when signal N ended it). Arguments after the script (or "
        "after `--`) become $1, $2, ….",
        usage="scriptbus run [options] (SCRIPT | -f FILE | --command NAME) [--] [ARG ...]",
    )
    p.add_argument("words", nargs="*", metavar="SCRIPT/ARG", help="the script (unless -f or --command), then its args")
    p.add_argument("-f", "--file", metavar="FILE", help="read the script from FILE (- for stdin)")
    p.add_argument("--command", "-c", metavar="NAME", help="run a saved command")
    _run_options(p)
    p.add_argument("--host", action="append", help="run on this executor host only (with --all: repeatable)")
    p.add_argument(
        "--use-file",
        action="append",
        metavar="NAME",
        help="a stored file (`scriptbus files`) placed in the run's folder before it starts (repeatable)",
    )
    p.add_argument(
        "--artifact",
        action="append",
        metavar="GLOB",
        help="keep files of the run's folder matching GLOB ('*.log', 'out/**') after it ends (repeatable)",
    )
    p.add_argument("--detach", action="store_true", help="print the run's id and return at once")
    from scriptbus.client import fanouts

    fanouts.add_run_options(p)
    p.add_argument(
        "--stop-on-interrupt",
        action="store_true",
        help="Ctrl-C stops the run (otherwise: asked on a terminal, else it detaches)",
    )

    p = add(
        "ps",
        cmd_ps,
        help="list runs",
        description="List runs, newest first: queued and running ones, or with --all finished ones too.",
    )
    p.add_argument("--status", "-s", choices=sorted(TERMINAL | set(ACTIVE)), help="only this status")
    p.add_argument("--command", "-c", metavar="NAME", help="only runs of this saved command")
    p.add_argument("--host", help="only runs on this host")
    p.add_argument("--pool", help="only runs of this pool")
    p.add_argument("--limit", "-n", type=int, default=50, metavar="N", help="at most N runs (default 50)")
    p.add_argument("--all", "-a", action="store_true", help="include finished runs")

    p = add("show", cmd_show, help="a run in full", description="Everything about one run.")
    p.add_argument("id", metavar="ID", help="run id, or an unambiguous start of one")

    p = add(
        "logs",
        cmd_logs,
        help="a run's output",
        description="A run's output bytes: stdout to stdout, stderr to stderr (or one of them with "
        "--stream, to stdout). -f follows a running run until it ends.",
    )
    p.add_argument("id", metavar="ID", help="run id, or an unambiguous start of one")
    p.add_argument("-f", "--follow", action="store_true", help="keep following until the run ends")
    p.add_argument("--stream", choices=("stdout", "stderr"), help="only this stream")

    p = add("stop", cmd_stop, help="stop a run", description="SIGTERM, then SIGKILL after its grace period.")
    p.add_argument("id", metavar="ID", help="run id, or an unambiguous start of one")
    p = add("rm", cmd_rm, help="forget a finished run", description="Delete a finished run and its output.")
    p.add_argument("id", metavar="ID", help="run id, or an unambiguous start of one")

    cadd = verb_group(sub, common, "commands", help="saved commands", description="Saved commands: named scripts.")

    cp = cadd("list", cmd_commands_list, help="list saved commands")
    cp.add_argument("q", nargs="?", help="only names or descriptions containing this")
    cp = cadd("show", cmd_commands_show, help="one command and its script")
    cp.add_argument("name", metavar="NAME")
    for name, handler, text in (
        ("create", cmd_commands_create, "save a new command"),
        ("edit", cmd_commands_edit, "change a command: the given fields, or its script in $EDITOR"),
    ):
        cp = cadd(name, handler, help=text, description=text)
        cp.add_argument("name", metavar="NAME")
        cp.add_argument("-f", "--file", metavar="FILE", help="the script from FILE (- for stdin)")
        cp.add_argument("--script", metavar="S", help="the script itself")
        _run_options(cp)
        if name == "edit":
            cp.add_argument("--rename", metavar="NEW", help="give the command a new name")
            cp.add_argument("--no-timeout", action="store_true", help="remove the timeout")
    cp = cadd("rm", cmd_commands_rm, help="delete a saved command (past runs keep their script)")
    cp.add_argument("name", metavar="NAME")

    add("executors", cmd_executors, help="the fleet", description="Executors: state, pools, load, heartbeat.")

    # Imported here: the workflow, secret and token verbs build on this module's Context and helpers.
    from scriptbus.client import fanouts, files, schedules, secrets, tokens, workflows

    workflows.add_parser(sub, common)
    files.add_parser(sub, common)
    fanouts.add_parser(sub, common)
    secrets.add_parser(sub, common)
    tokens.add_parser(sub, common)
    schedules.add_parser(sub, common)
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"scriptbus: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run one client command (`argv` without the program name) and exit with its status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "limit", 1) is not None and getattr(args, "limit", 1) < 1:
        parser.error("--limit must be at least 1")
    api_url = args.api or os.environ.get("SCRIPTBUS_API") or DEFAULT_API
    if not re.match(r"^https?://", api_url):
        _fail(f"--api {api_url!r}: expected an http:// or https:// URL", 2)
    token = args.token or os.environ.get("SCRIPTBUS_TOKEN") or None
    width = shutil.get_terminal_size((120, 24)).columns if _is_tty(sys.stdout) else 120
    code = 1
    try:
        with Api(api_url, token) as api:
            ctx = Context(api=api, json=args.json, colour=render.use_colour(sys.stdout), width=width)
            code = args.handler(ctx, args)
    except ClientError as exc:
        _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # Our reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
    sys.exit(code)
