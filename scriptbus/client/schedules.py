"""`scriptbus schedules …`: run a saved command or a workflow at cron times or every N seconds."""

from __future__ import annotations

import argparse
from typing import Any

from scriptbus.client.api import ClientError, _json, _seg
from scriptbus.client.commands import Context, _print_json, parse_env
from scriptbus.client.verbs import verb_group


def _when(s: dict[str, Any]) -> str:
    return f"cron {s['cron']}" if s.get("cron") else f"every {s['every_s']}s"


def _target(s: dict[str, Any]) -> str:
    wf = s.get("workflow")
    return (
        f"workflow {wf['project']}/{wf['workflow']}"
        if wf
        else f"command {s.get('command_name') or s.get('command_id')}"
    )


def table(items: list[dict[str, Any]]) -> str:
    rows = [("NAME", "WHEN", "TIMEZONE", "TARGET", "OVERLAP", "STATE", "LAST TICK", "NEXT")]
    for s in items:
        nxt = s.get("next_ticks") or ["-"]
        state = "paused" if s.get("paused") else "active"
        rows.append((s["name"], _when(s), s["timezone"], _target(s), s["overlap"], state,
                     f"{s.get('last_tick') or '-'} {s.get('last_outcome') or ''}".strip(), nxt[0]))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def details(s: dict[str, Any]) -> str:
    lines = [
        f"schedule   {s['name']} ({s['id']})",
        f"when       {_when(s)} in {s['timezone']}; overlap {s['overlap']}, catch-up {s['catch_up']}",
        f"target     {_target(s)} {' '.join(s.get('args') or [])}".rstrip(),
        f"state      {'paused' if s.get('paused') else 'active'}; {s['fired']} fired, {s['skipped']} skipped",
        f"by         {s['created_by'] or '-'} at {s['created_at']}; changed by {s['updated_by'] or '-'}",
        "next       " + (", ".join(s.get("next_ticks") or []) or "-"),
    ]
    if s.get("recent"):
        lines.append("recent ticks:")
        for f in s["recent"]:
            made = f.get("run_id") or f.get("wfrun_id") or ""
            why = f" ({f['reason']})" if f.get("reason") else ""
            lines.append(f"  {f['tick']}  {f['outcome']:<8} {made}{why}")
    return "\n".join(lines)


def _show(ctx: Context, schedule: dict[str, Any]) -> int:
    if ctx.json:
        _print_json(schedule)
    else:
        print(details(schedule))
    return 0


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    if (args.cron is None) == (args.every is None):
        raise ClientError("give exactly one of --cron 'EXPR' and --every SECONDS")
    if (args.command is None) == (args.workflow is None):
        raise ClientError("give exactly one of --command NAME and --workflow PROJECT/WORKFLOW")
    body: dict[str, Any] = {
        "name": args.name,
        "timezone": args.timezone,
        "args": args.args,
        "env": parse_env(args.env),
        "secrets": args.secret or [],
        "overlap": args.overlap,
        "catch_up": args.catch_up,
    }
    if args.cron is not None:
        body["cron"] = args.cron
    else:
        body["every_s"] = args.every
    if args.command is not None:
        body["command_id"] = args.command
    else:
        project, sep, workflow = args.workflow.partition("/")
        if not sep or not project or not workflow:
            raise ClientError(f"--workflow {args.workflow!r}: write it PROJECT/WORKFLOW")
        body["workflow"] = {"project": project, "workflow": workflow}
    return _show(ctx, _json(ctx.api.request("POST", "/schedules", json=body)))


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    listing = _json(ctx.api.request("GET", "/schedules", params={"limit": 1000}))
    if ctx.json:
        _print_json(listing)
    else:
        print(table(listing.get("items", [])))
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    return _show(ctx, _json(ctx.api.request("GET", f"/schedules/{_seg(args.ref)}")))


def cmd_pause(ctx: Context, args: argparse.Namespace) -> int:
    return _show(ctx, _json(ctx.api.request("POST", f"/schedules/{_seg(args.ref)}/pause")))


def cmd_resume(ctx: Context, args: argparse.Namespace) -> int:
    return _show(ctx, _json(ctx.api.request("POST", f"/schedules/{_seg(args.ref)}/resume")))


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    ctx.api.request("DELETE", f"/schedules/{_seg(args.ref)}")
    if ctx.json:
        _print_json({"name": args.ref, "deleted": True})
    else:
        print(f"deleted schedule {args.ref}")
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`scriptbus schedules` and its verbs, on the client's subparsers `sub`."""
    add = verb_group(
        sub,
        common,
        "schedules",
        help="run a command or workflow at cron times or every N seconds (admin to change)",
        description="Schedules: each tick fires once, whatever happens to schedulers.",
    )

    sp = add("create", cmd_create, help="make a schedule")
    sp.add_argument("name", help="unique name")
    sp.add_argument("--cron", help="five-field cron expression, e.g. '*/5 * * * *'")
    sp.add_argument("--every", type=int, metavar="SECONDS", help="fire every this many seconds")
    sp.add_argument("--timezone", default="UTC", help="IANA zone the cron expression is read in (default UTC)")
    sp.add_argument("--command", help="the saved command to run (name or id)")
    sp.add_argument("--workflow", metavar="PROJECT/WORKFLOW", help="the workflow to start")
    overlap = "while the previous run still runs: skip the tick (default), start anyway, or queue one"
    sp.add_argument("--overlap", choices=("skip", "allow", "queue"), default="skip", help=overlap)
    catch_up = "a tick missed while no scheduler ran: run the latest once (default) or none"
    sp.add_argument("--catch-up", choices=("none", "last"), default="last", help=catch_up)
    sp.add_argument("-e", "--env", action="append", metavar="K=V", help="environment variable for the runs")
    sp.add_argument("--secret", action="append", metavar="NAME", help="secret the runs get in their environment")
    sp.add_argument("--arg", action="append", dest="args", default=[], metavar="A", help="an argument ($1…); repeat")
    add("list", cmd_list, help="list schedules with their next fire time")
    for name, handler, what in (
        ("show", cmd_show, "one schedule: its next fire times and latest ticks"),
        ("pause", cmd_pause, "no ticks fire until resumed"),
        ("resume", cmd_resume, "fire again from now on (ticks that fell while paused never run)"),
        ("rm", cmd_rm, "delete a schedule (its runs are kept)"),
    ):
        sp = add(name, handler, help=what)
        sp.add_argument("ref", metavar="NAME", help="the schedule's name or id")
