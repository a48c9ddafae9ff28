"""`scriptbus run --all …` (one script on many executors) and `scriptbus fanouts list|show|stop|retry`.

Following a fan-out polls `GET /fanouts/{id}`; each host's run is followed by the plain runs'
`RunFollower` in a thread of its own as soon as the scheduler has started it, and its lines come out
prefixed by the host's name (the threads hand whole lines to the main thread, which alone writes)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from scriptbus.client import render
from scriptbus.client.api import Api, ClientError, Unreachable
from scriptbus.client.commands import Context, UsageError, parse_env, read_script
from scriptbus.client.prefixed_output import PrefixedOutputs
from scriptbus.client.verbs import verb_group

POLL_S = 0.25
_OUTPUT_GRACE_S = 30.0


def _path(fanout_id: str) -> str:
    return f"/fanouts/{fanout_id}"


def _json(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


def create_fanout(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    return api._create("/fanouts", body)


def get_fanout(api: Api, fanout_id: str) -> dict[str, Any]:
    return _json(api.request("GET", _path(fanout_id)))


def parse_labels(items: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def fanout_body(args: argparse.Namespace) -> dict[str, Any]:
    """The `POST /fanouts` body of `scriptbus run --all …`."""
    words = list(args.words)
    body: dict[str, Any] = {}
    if args.command:
        body["command_id"] = args.command
    elif args.file:
        body["script"] = read_script(args.file)
    elif words:
        body["script"] = words.pop(0)
    else:
        raise UsageError("nothing to run: give a script, -f FILE or --command NAME")
    body["args"] = words
    env = parse_env(args.env)
    if env:
        body["env"] = env
    if args.secret:
        body["secrets"] = args.secret
    labels = parse_labels(args.label)
    if labels:
        body["labels"] = labels
    if args.host:
        body["hosts"] = args.host
    for key, value in (
        ("description", args.description),
        ("timeout_s", args.timeout),
        ("stop_grace_s", args.stop_grace),
        ("pool", args.pool),
        ("max_parallel", args.max_parallel),
        ("max_failures", args.max_failures),
    ):
        if value is not None:
            body[key] = value
    return body


class FanoutFollower:
    """Follows one fan-out until it has finished and every host's output is read; returns its last state."""

    def __init__(
        self, api: Api, fanout_id: str, out: TextIO, err: TextIO, ignore: frozenset[str] = frozenset()
    ) -> None:
        self.api = api
        # Runs not to follow: after a retry, those of the hosts it does not rerun.
        self.ignore = ignore
        self.fanout_id = fanout_id
        self.out = out
        self.err = err
        self._outputs = PrefixedOutputs(api)

    def follow(self) -> dict[str, Any]:
        fanout: dict[str, Any] | None = None
        ended_at: float | None = None
        while True:
            try:
                fanout = get_fanout(self.api, self.fanout_id)
            except ClientError as exc:
                # Polling goes on through a gateway restart; anything else is for the user.
                transient = isinstance(exc, Unreachable) or (exc.status is not None and exc.status >= 500)
                if fanout is None or not transient:
                    raise
            self._follow_new_runs(fanout)
            if fanout.get("finished_at"):
                ended_at = ended_at or time.monotonic()
                if self._outputs.done() or time.monotonic() - ended_at > _OUTPUT_GRACE_S:
                    break
            self._pump(POLL_S)
        self._pump(0)
        return fanout

    def _follow_new_runs(self, fanout: dict[str, Any]) -> None:
        """Follow each host's run once it is dispatched. A host first seen when hosts that started before it
        have finished (a rolling fan-out) shows its lines after theirs, also when it is still queued: with
        no start time yet, it used to wait for nobody, and its lines could come first (seen in CI)."""
        width = max((len(h) for h in fanout.get("hosts", [])), default=0)
        latest = datetime.max.replace(tzinfo=UTC)
        runs = [
            run
            for run in fanout.get("runs", [])
            if run.get("run_id") and run["status"] != "pending" and run["run_id"] not in self.ignore
        ]
        runs.sort(key=lambda run: _instant(run.get("started_at")) or latest)
        for run in runs:
            started = _instant(run.get("started_at")) or latest
            before = [
                other["run_id"]
                for other in runs
                if other is not run
                and other.get("finished_at")
                and (_instant(other.get("started_at")) or latest) <= started
            ]
            self._outputs.follow(run["run_id"], f"{run['host']:<{width}} | ", after=before)

    def _pump(self, wait_s: float) -> None:
        for line in self._outputs.take(wait_s):
            target = self.err if line.stderr else self.out
            target.write(line.text + "\n")
            target.flush()


def _instant(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def hosts_table(fanout: dict[str, Any], colour: bool) -> str:
    rows = [
        [
            str(run["host"]),
            render.paint(str(run["status"]), render.STATUS_COLOURS.get(str(run["status"])), colour),
            render.exit_text(run),
            render.duration(run.get("duration_s")),
        ]
        for run in fanout.get("runs", [])
    ]
    return render.table(["HOST", "STATUS", "EXIT", "DURATION"], rows, colour)


def heading(fanout: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(fanout.get("counts", {}).items()))
    return f"fan-out {fanout['id']}: {fanout['status']} ({counts})"


def exit_code(fanout: dict[str, Any]) -> int:
    """0 when every host succeeded, else 1."""
    return 0 if fanout.get("status") == "succeeded" else 1


def run_all(ctx: Context, args: argparse.Namespace) -> int:
    """`scriptbus run --all`: start the fan-out, print each host's lines as they come, then a summary."""
    fanout = create_fanout(ctx.api, fanout_body(args))
    if args.detach:
        print(json.dumps(fanout, indent=2) if ctx.json else fanout["id"])
        return 0
    print(f"scriptbus: fan-out {fanout['id']} on {len(fanout['hosts'])} host(s): {', '.join(fanout['hosts'])}",
          file=sys.stderr)  # fmt: skip
    try:
        fanout = FanoutFollower(ctx.api, fanout["id"], sys.stdout, sys.stderr).follow()
    except KeyboardInterrupt:
        print(f"\nscriptbus: the fan-out goes on: `scriptbus fanouts show {fanout['id']}`, "
              f"`scriptbus fanouts stop {fanout['id']}`", file=sys.stderr)  # fmt: skip
        return 130
    if ctx.json:
        print(json.dumps(fanout, indent=2))
    else:
        print(heading(fanout))
        print(hosts_table(fanout, ctx.colour))
    return exit_code(fanout)


# -- scriptbus fanouts … ----------------------------------------------------------------------------


def _show(ctx: Context, fanout: dict[str, Any]) -> None:
    if ctx.json:
        print(json.dumps(fanout, indent=2))
    else:
        print(heading(fanout))
        print(hosts_table(fanout, ctx.colour))


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    page = _json(ctx.api.request("GET", "/fanouts", params=params))
    if ctx.json:
        print(json.dumps(page, indent=2))
        return 0
    rows = [
        [
            str(f["id"])[:8],
            render.paint(str(f["status"]), render.STATUS_COLOURS.get(str(f["status"])), ctx.colour),
            str(len(f["hosts"])),
            ", ".join(f"{n} {s}" for s, n in sorted(f["counts"].items())),
            render.ago(f.get("created_at")),
            render.truncate(render.run_label(f), 40),
        ]
        for f in page["items"]
    ]
    print(render.table(["ID", "STATUS", "HOSTS", "COUNTS", "CREATED", "SCRIPT"], rows, ctx.colour))
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    _show(ctx, get_fanout(ctx.api, args.id))
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    _show(ctx, ctx.api._create(_path(args.id) + "/stop", {}))
    return 0


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    # The runs from before the retry, read before asking: a rerun host's new run may already show as
    # started in the retry's answer, and must still be followed.
    before = get_fanout(ctx.api, args.id) if not args.detach else None
    fanout = ctx.api._create(_path(args.id) + "/retry", {})
    if before is None:
        _show(ctx, fanout)
        return 0
    kept = frozenset(str(r["run_id"]) for r in before["runs"] if r["run_id"])
    fanout = FanoutFollower(ctx.api, fanout["id"], sys.stdout, sys.stderr, kept).follow()
    _show(ctx, fanout)
    return exit_code(fanout)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options `scriptbus run` takes for `--all`."""
    g = p.add_argument_group("many hosts (--all)")
    g.add_argument("--all", action="store_true", help="run on every live executor matching --pool/--label/--host")
    g.add_argument("--label", action="append", metavar="K=V", help="only executors with this label (repeatable)")
    g.add_argument("--max-parallel", type=int, metavar="N", help="at most N hosts at once")
    g.add_argument("--max-failures", type=int, metavar="N", help="start no more hosts after N failed")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`scriptbus fanouts` and its verbs."""
    add = verb_group(
        sub,
        common,
        "fanouts",
        help="fan-outs: one script on many hosts (started with `run --all`)",
        description="Fan-outs started with `scriptbus run --all`: list them, show one, stop one, or retry "
        "the hosts that failed.",
    )

    fp = add("list", cmd_list, help="fan-outs, newest first")
    fp.add_argument("--status", "-s", choices=("running", "succeeded", "failed", "stopped"))
    fp.add_argument("--limit", "-n", type=int, default=50, metavar="N")
    fp = add("show", cmd_show, help="one fan-out: each host's status, exit code, duration")
    fp.add_argument("id", metavar="ID")
    fp = add("stop", cmd_stop, help="start no more hosts and stop the running ones")
    fp.add_argument("id", metavar="ID")
    fp = add("retry", cmd_retry, help="rerun the hosts that failed (or never started), and follow them")
    fp.add_argument("id", metavar="ID")
    fp.add_argument("--detach", action="store_true", help="do not follow")


def check_run_all(args: argparse.Namespace) -> None:
    if not args.all:
        if args.label or args.max_parallel is not None or args.max_failures is not None:
            raise UsageError("--label, --max-parallel and --max-failures go with --all")
        if args.host and len(args.host) > 1:
            raise UsageError("more than one --host needs --all")
