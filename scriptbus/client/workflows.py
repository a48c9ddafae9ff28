"""`scriptbus wf …`: seed 004's verbs for projects and workflows (`select-project`, `create`, `update`,
`delete`, `dump`, `run`, `stop`, `status`, `set-status`) and ours beside them (`retry`, `follow`, `ps`),
over the gateway's workflow routes. Handlers return the exit status, as the other client commands do."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from scriptbus.client import selection, workflow_render
from scriptbus.client.api import Api, ClientError, NotFound, is_full_id
from scriptbus.client.commands import Context, UsageError, _is_tty, _print_json, print_listing
from scriptbus.client.verbs import verb_group
from scriptbus.client.workflow_follow import POLL_S, WorkflowFollower
from scriptbus.client.workflow_render import ACTIVE, EXIT_DETACHED, TERMINAL, exit_status

EPILOG = """exit status: 0 done (for `run --follow`/`follow`: the workflow run succeeded); 1 the API refused
(its reason on stderr, naming the field) or the followed run failed or timed out; 2 wrong options or the
API cannot be reached; 3 the followed run was stopped, killed or cancelled; 130 Ctrl-C detached (the run
goes on).

The project: -p NAME, else the one `select-project` (or the last create/update/delete/run) remembered in
$XDG_CONFIG_HOME/scriptbus/wf.json."""
_PAGE = 1000


# -- helpers ---------------------------------------------------------------------------------------


def _project(args: argparse.Namespace) -> str:
    project = args.project or selection.selected_project()
    if not project:
        raise UsageError("which project? give -p NAME, or choose one once with `scriptbus wf select-project NAME`")
    return str(project)


def _remember(project: str | None) -> None:
    """Seed 004: the project a verb names becomes the current one. A read-only config dir is no error."""
    if project:
        try:
            selection.select_project(project)
        except OSError:
            pass


def read_document(file: str | None, text: str | None) -> Any:
    """Seed 004's JSON from `-f FILE` (`-` for stdin) or `-j JSON`; bad JSON is named by line and column."""
    where = "-j" if text is not None else str(file)
    if text is None:
        try:
            if file == "-":
                text = sys.stdin.read()
            else:
                with open(str(file), encoding="utf-8") as f:
                    text = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{file} is not UTF-8 text (byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def _list_runs(api: Api, limit: int, **filters: Any) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` workflow runs, newest first, and how many match."""
    items: list[dict[str, Any]] = []
    total = 0
    cursor: str | None = None
    while len(items) < limit:
        page = api.list_workflow_runs(**filters, limit=min(_PAGE, limit - len(items)), cursor=cursor)
        total = int(page.get("total", 0))
        items += page.get("items", [])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return items[:limit], total


def resolve_run(api: Api, ref: str) -> str:
    """A full workflow run id for `ref`, which may be the start of one (as `wf ps` shows them)."""
    if is_full_id(ref):
        return ref.lower()
    prefix = ref.lower()
    if not prefix or prefix.strip("0123456789abcdef-"):
        raise UsageError(f"{ref!r} is not a workflow run id (ids look like 3f2a9c1e-…)")
    runs, _ = _list_runs(api, 1_000_000)
    matches = [str(r["id"]) for r in runs if str(r["id"]).startswith(prefix)]
    if not matches:
        raise ClientError(f"no workflow run id starts with {ref!r}")
    if len(matches) > 1:
        raise ClientError(f"workflow run id {ref!r} is ambiguous: {len(matches)} runs match")
    return matches[0]


def active_run(api: Api, project: str | None, workflow: str) -> dict[str, Any]:
    """The active run of `workflow` (in `project`, or in any project when None: seed 004's `stop -w`)."""
    found: list[dict[str, Any]] = []
    for status in sorted(ACTIVE):
        runs, _ = _list_runs(api, _PAGE, project=project, workflow=workflow, status=status)
        found += runs
    where = f"{project}/{workflow}" if project else f"{workflow!r}"
    if not found:
        raise ClientError(f"workflow {where} has no active run")
    if len(found) > 1:
        named = ", ".join(f"{r['project']}/{r['workflow']} {str(r['id'])[:8]}" for r in found[:5])
        hint = "" if project else "; name the project with -p"
        raise ClientError(f"workflow {where} has {len(found)} active runs ({named}){hint}, or give a run id")
    return found[0]


def latest_run(api: Api, project: str, workflow: str) -> dict[str, Any]:
    runs, _ = _list_runs(api, 1, project=project, workflow=workflow)
    if not runs:
        api.export_project(project, workflow)  # a 404 naming what does not exist, if anything does not
        raise ClientError(f"workflow {project}/{workflow} has not run yet")
    return runs[0]


def _run_of(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """The run a verb acts on: RUN_ID when given, else the active run of -w."""
    if args.run:
        if args.workflow:
            raise UsageError("give either a run id or -w WORKFLOW, not both")
        return ctx.api.get_workflow_run(resolve_run(ctx.api, args.run))
    if not args.workflow:
        raise UsageError("which run? give -w WORKFLOW (its active run) or a run id")
    project = args.project or selection.selected_project()
    return active_run(ctx.api, project, args.workflow)


def follow(ctx: Context, run: dict[str, Any]) -> int:
    """Follow a workflow run to its end; the exit status says how it ended."""
    wfrun_id = str(run["id"])
    live = _is_tty(sys.stdout) and not ctx.json
    follower = WorkflowFollower(ctx.api, wfrun_id, live_table=live, colour=ctx.colour, width=ctx.width)
    try:
        final = follower.follow()
    except KeyboardInterrupt:
        print(
            f"\nscriptbus: detached; workflow run {wfrun_id} goes on. "
            f"Follow again: scriptbus wf follow {wfrun_id}; stop it: scriptbus wf stop {wfrun_id}",
            file=sys.stderr,
        )
        return EXIT_DETACHED
    if ctx.json:
        _print_json(final)
    status = str(final.get("status"))
    code = exit_status(status)
    if code:
        why = f" (step {final['failed_step']} failed)" if final.get("failed_step") else ""
        print(f"scriptbus: workflow run {wfrun_id[:8]} {status.replace('_', ' ')}{why}", file=sys.stderr)
    return code


# -- verbs -----------------------------------------------------------------------------------------


def cmd_select_project(ctx: Context, args: argparse.Namespace) -> int:
    if args.name is None:
        current = selection.selected_project()
        if current is None:
            raise ClientError("no project selected: `scriptbus wf select-project NAME` chooses one")
        print(current)
        return 0
    try:
        ctx.api.export_project(args.name)
    except NotFound as exc:
        if exc.no_route:
            raise
        raise ClientError(f"no project {args.name!r}; `scriptbus wf create -f FILE` makes it") from exc
    path = selection.select_project(args.name)
    print(f"project {args.name} selected (kept in {path})")
    return 0


def _change(verb: str) -> Callable[[Context, argparse.Namespace], int]:
    def handler(ctx: Context, args: argparse.Namespace) -> int:
        document = read_document(args.file, args.json_text)
        if verb == "delete":
            result = ctx.api.remove_definitions(document)
        else:
            result = ctx.api.import_project(document, replace=verb == "update")
        _remember(workflow_render.document_project(document))
        if ctx.json:
            _print_json(result)
        else:
            done = {"create": "created", "update": "updated", "delete": "deleted"}[verb]
            if result is None:
                print(f"{done}; project {workflow_render.document_project(document)} was left empty and is removed")
            else:
                print(f"{done}; project {workflow_render.project_summary(result)}")
        return 0

    return handler


def cmd_dump(ctx: Context, args: argparse.Namespace) -> int:
    if args.task and not args.workflow:
        raise UsageError("-t TASK needs -w WORKFLOW")
    document = ctx.api.export_project(_project(args), args.workflow, args.task)
    # The seed's own layout: what `update -f` takes back unchanged.
    print(json.dumps(document, indent=4, ensure_ascii=False))
    return 0


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    project = _project(args)
    run = ctx.api.start_workflow_run(project, args.workflow, args.task)
    _remember(project)
    if not args.follow:
        if ctx.json:
            _print_json(run)
        else:
            print(run["id"])
        return 0
    print(f"scriptbus: workflow run {run['id']} of {project}/{args.workflow} started", file=sys.stderr)
    return follow(ctx, run)


def cmd_follow(ctx: Context, args: argparse.Namespace) -> int:
    return follow(ctx, ctx.api.get_workflow_run(resolve_run(ctx.api, args.run)))


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    run = _run_of(ctx, args)
    wfrun_id = str(run["id"])
    try:
        run = ctx.api.stop_workflow_run(wfrun_id)
    except ClientError as exc:
        if exc.status != 409:
            raise
        raise ClientError(f"{exc.message}; nothing to stop") from exc
    if not ctx.json:
        print(f"stopping workflow run {wfrun_id} ({run['project']}/{run['workflow']})")
    if args.wait:
        while run.get("status") not in TERMINAL:
            time.sleep(POLL_S)
            run = ctx.api.get_workflow_run(wfrun_id)
        if not ctx.json:
            print(f"workflow run {wfrun_id[:8]} {run['status']}")
            print(workflow_render.spad_lines(run))
    if ctx.json:
        _print_json(run)
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    project = _project(args)
    summary = latest_run(ctx.api, project, args.workflow)
    run = ctx.api.get_workflow_run(str(summary["id"]))
    if args.task and all(s.get("name") != args.task for s in run.get("steps") or []):
        raise ClientError(f"the latest run of {project}/{args.workflow} has no task {args.task!r}")
    form = "json" if ctx.json and args.format == "table" else args.format
    if form == "json":
        if args.task:
            run = {**run, "steps": [s for s in run["steps"] if s.get("name") == args.task]}
        _print_json(run)
    elif form == "spad":
        print(workflow_render.spad_lines(run, args.task))
    else:
        if args.task:
            run = {**run, "steps": [s for s in run["steps"] if s.get("name") == args.task]}
        print(workflow_render.run_heading(run, ctx.colour))
        print(workflow_render.steps_table(run, ctx.colour, ctx.width))
    return 0


def cmd_set_status(ctx: Context, args: argparse.Namespace) -> int:
    run = _run_of(ctx, args)
    wfrun_id = str(run["id"])
    run = ctx.api.hold_step(wfrun_id, args.task, hold=args.status == "waiting")
    if ctx.json:
        _print_json(run)
    elif args.status == "waiting":
        print(f"{args.task} waiting: a stop of workflow run {wfrun_id[:8]} waits until it is released")
    else:
        print(f"{args.task} released: a stop of workflow run {wfrun_id[:8]} goes ahead")
    return 0


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    run = ctx.api.retry_workflow_run(resolve_run(ctx.api, args.run))
    if args.follow:
        print(f"scriptbus: workflow run {run['id']} retries {run.get('retry_of')}", file=sys.stderr)
        return follow(ctx, run)
    if ctx.json:
        _print_json(run)
    else:
        print(run["id"])
    return 0


def cmd_ps(ctx: Context, args: argparse.Namespace) -> int:
    project = args.project or (None if args.all_projects else selection.selected_project())
    statuses: list[str | None] = [args.status] if args.status else ([None] if args.all else [*sorted(ACTIVE)])
    return print_listing(
        ctx,
        args,
        statuses,
        lambda status: _list_runs(ctx.api, args.limit, project=project, workflow=args.workflow, status=status),
        workflow_render.runs_table,
        "no active workflow runs",
    )


# -- the parser ------------------------------------------------------------------------------------


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`scriptbus wf` and its verbs, on the client's subparsers `sub`."""
    add = verb_group(
        sub,
        common,
        "wf",
        help="projects and workflows (seed 004's verbs)",
        description="Projects and workflows, with seed 004's JSON and verbs.",
        epilog=EPILOG,
        verbs_show_epilog=True,
    )

    def where(wp: argparse.ArgumentParser, workflow: bool = True, task: bool = True) -> None:
        wp.add_argument("-p", "--project", metavar="P", help="the project (default: the selected one)")
        if workflow:
            wp.add_argument("-w", "--workflow", metavar="W", required=True, help="the workflow")
        if task:
            wp.add_argument("-t", "--task", metavar="T", help="only this task")

    wp = add(
        "select-project",
        cmd_select_project,
        aliases=["select_project"],
        help="choose the project later verbs use",
        description="Remember the project that verbs without -p use. Without NAME: print the selected one.",
    )
    wp.add_argument("name", nargs="?", metavar="NAME")

    for verb, text in (
        ("create", "make what is missing and add workflows and tasks (a task at a taken place shifts the later)"),
        ("update", "replace the workflows and tasks named (refused while one of them runs)"),
        ("delete", "remove the leaves of the tree: tasks, or workflows given without tasks"),
    ):
        wp = add(verb, _change(verb), help=text, description=f"Seed 004's {verb}: {text}.")
        source = wp.add_mutually_exclusive_group(required=True)
        source.add_argument("-f", "--file", metavar="FILE", help="seed 004's JSON document (- for stdin)")
        source.add_argument("-j", "--json-text", metavar="JSON", help="the document itself")

    wp = add(
        "dump",
        cmd_dump,
        help="seed 004's JSON of a project, workflow or task",
        description="Seed 004's JSON of the project (or -w workflow, -t task), as `update -f` takes it back.",
    )
    where(wp, workflow=False)
    wp.add_argument("-w", "--workflow", metavar="W", help="only this workflow")

    wp = add("run", cmd_run, help="start a workflow run", description="Start a run of the workflow (-t: one task).")
    where(wp)
    wp.add_argument("--follow", "-F", action="store_true", help="show its steps and their output live until it ends")

    wp = add("follow", cmd_follow, help="follow a workflow run", description="Steps and output live, to the end.")
    wp.add_argument("run", metavar="RUN_ID", help="workflow run id, or an unambiguous start of one")

    for verb, handler, text in (
        ("stop", cmd_stop, "stop the active run of -w (or RUN_ID): SIGTERM, grace, SIGKILL"),
        ("set-status", cmd_set_status, "seed 004's set_status: `waiting` holds a stop off, `running` releases"),
    ):
        alias = verb.replace("-", "_")
        wp = add(verb, handler, help=text, description=text + ".", aliases=[alias] if alias != verb else [])
        wp.add_argument("-p", "--project", metavar="P", help="the project (default: the selected one, else any)")
        wp.add_argument("-w", "--workflow", metavar="W", help="the workflow whose active run is meant")
        if verb == "set-status":
            wp.add_argument("-t", "--task", metavar="T", required=True, help="the task")
            wp.add_argument("status", choices=("waiting", "running"), help="waiting holds, running releases")
            wp.add_argument("--run", metavar="RUN_ID", help="this workflow run rather than the active one of -w")
        else:
            wp.add_argument("run", nargs="?", metavar="RUN_ID", help="this workflow run rather than -w's")
            wp.add_argument("--wait", action="store_true", help="wait until it has stopped; print its steps")

    wp = add(
        "status",
        cmd_status,
        help="the latest run of a workflow and its steps",
        description="The latest run of the workflow: its status and every step's.",
    )
    where(wp)
    wp.add_argument(
        "--format",
        choices=("table", "json", "spad"),
        default="table",
        help="spad: `TASK STATUS` lines in seed 004's words (success0, error(1), rerun, …)",
    )

    wp = add("retry", cmd_retry, help="run a finished workflow run again from its first unsuccessful step")
    wp.add_argument("run", metavar="RUN_ID", help="workflow run id, or an unambiguous start of one")
    wp.add_argument("--follow", "-F", action="store_true", help="follow the new run")

    wp = add("ps", cmd_ps, help="list workflow runs", description="Workflow runs, newest first (active ones).")
    wp.add_argument("-p", "--project", metavar="P", help="only this project (default: the selected one)")
    wp.add_argument("-A", "--all-projects", action="store_true", help="every project, not only the selected one")
    wp.add_argument("-w", "--workflow", metavar="W", help="only this workflow")
    wp.add_argument("--status", "-s", choices=sorted(ACTIVE | TERMINAL), help="only this status")
    wp.add_argument("--limit", "-n", type=int, default=50, metavar="N", help="at most N runs (default 50)")
    wp.add_argument("--all", "-a", action="store_true", help="include finished runs")
