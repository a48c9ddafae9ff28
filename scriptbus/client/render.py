"""How the command line shows things: aligned tables, status colours, relative times and durations."""

from __future__ import annotations

import os
import re
import shlex
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

_RESET = "\x1b[0m"
_COLOURS = {
    "green": "\x1b[32m",
    "red": "\x1b[31m",
    "yellow": "\x1b[33m",
    "blue": "\x1b[34m",
    "cyan": "\x1b[36m",
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
}
STATUS_COLOURS = {
    "queued": "yellow",
    "running": "cyan",
    "stopping": "yellow",
    "succeeded": "green",
    "failed": "red",
    "terminated": "red",
    "killed": "red",
    "timed_out": "red",
    "lost": "red",
    "stopped": "dim",
    "cancelled": "dim",
    "online": "green",
    "draining": "yellow",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def use_colour(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set to anything (https://no-color.org)."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or not colour or colour not in _COLOURS or not text:
        return text
    return f"{_COLOURS[colour]}{text}{_RESET}"


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], colour: bool = False) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded. Cells may already hold
    colour codes: widths count only what is visible."""
    widths = [visible_len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))
    lines = []
    header_cells = [paint(h, "bold", colour) for h in headers]
    for cells in [header_cells, *rows]:
        parts = []
        for i, cell in enumerate(cells):
            if i == len(cells) - 1:
                parts.append(cell)
            else:
                parts.append(cell + " " * (widths[i] - visible_len(cell)))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ago(value: str | datetime | None, now: datetime | None = None) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago`; `-` when unknown."""
    when = parse_time(value) if isinstance(value, str) or value is None else value
    if when is None:
        return "-"
    now = now or datetime.now(UTC)
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"


def duration(seconds: float | None) -> str:
    """`0.42s`, `12.3s`, `4m05s`, `2h03m`, `3d04h`; `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def truncate(text: str, width: int) -> str:
    """At most `width` characters, with `…` when cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def run_label(run: dict[str, Any]) -> str:
    """What a person calls a run: its description, else the first line of its script."""
    return str(run.get("description") or "") or first_line(str(run.get("script") or ""))


def run_duration(run: dict[str, Any], now: datetime | None = None) -> float | None:
    """The run's duration, or for a running one how long it has run so far."""
    if run.get("duration_s") is not None:
        return float(run["duration_s"])
    started = parse_time(run.get("started_at"))
    if started is None:
        return None
    end = parse_time(run.get("finished_at")) or now or datetime.now(UTC)
    return max(0.0, (end - started).total_seconds())


def runs_table(runs: Sequence[dict[str, Any]], colour: bool, width: int = 100, now: datetime | None = None) -> str:
    headers = ["ID", "STATUS", "EXIT", "HOST", "CREATED", "DURATION", "DESCRIPTION"]
    rows = []
    for run in runs:
        status = str(run.get("status", ""))
        rows.append(
            [
                str(run.get("id", ""))[:8],
                paint(status, STATUS_COLOURS.get(status), colour),
                exit_text(run),
                str(run.get("host") or run.get("target_host") or "-"),
                ago(run.get("created_at"), now),
                duration(run_duration(run, now)),
                run_label(run),
            ]
        )
    # The last column takes what the terminal has left (at least 20 characters).
    fixed = 0
    if rows:
        for i in range(len(headers) - 1):
            fixed += max(visible_len(headers[i]), *(visible_len(r[i]) for r in rows)) + 2
    room = max(20, width - fixed)
    for row in rows:
        row[-1] = truncate(row[-1], room)
    return table(headers, rows, colour)


def exit_text(run: dict[str, Any]) -> str:
    if run.get("exit_code") is not None:
        return str(run["exit_code"])
    if run.get("signal") is not None:
        return signal_name(int(run["signal"]))
    return "-"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def details(pairs: Sequence[tuple[str, str]], colour: bool = False) -> str:
    """`key:  value` lines with the values aligned; multi-line values are indented under their key."""
    width = max((len(k) for k, _ in pairs), default=0) + 2
    lines = []
    for key, value in pairs:
        label = paint(f"{key}:".ljust(width), "bold", colour)
        first, *rest = (value or "").split("\n") or [""]
        lines.append(f"{label}{first}".rstrip())
        lines += [(" " * width + line).rstrip() for line in rest]
    return "\n".join(lines)


def run_details(run: dict[str, Any], colour: bool, now: datetime | None = None) -> str:
    status = str(run.get("status", ""))
    pairs: list[tuple[str, str]] = [
        ("id", str(run.get("id", ""))),
        ("status", paint(status, STATUS_COLOURS.get(status), colour)),
    ]
    if run.get("reason"):
        pairs.append(("reason", str(run["reason"])))
    pairs += [
        ("exit", exit_text(run)),
        ("description", str(run.get("description") or "")),
    ]
    if run.get("command_id"):
        pairs.append(("command", str(run["command_id"])))
    pairs += [
        ("args", " ".join(_shell_quote(a) for a in run.get("args") or [])),
        ("pool", str(run.get("pool") or "")),
        ("target host", str(run.get("target_host") or "")),
        ("host", str(run.get("host") or "")),
        ("pid", str(run.get("pid") or "")),
        ("requested by", str(run.get("requested_by") or "")),
        ("stopped by", str(run.get("stopped_by") or "")),
        ("created", _when(run.get("created_at"), now)),
        ("started", _when(run.get("started_at"), now)),
        ("finished", _when(run.get("finished_at"), now)),
        ("duration", duration(run_duration(run, now))),
        ("timeout", f"{run['timeout_s']:g}s" if run.get("timeout_s") else "none"),
        ("stop grace", f"{float(run.get('stop_grace_s') or 0):g}s"),
        ("env", "\n".join(f"{k}={v}" for k, v in sorted((run.get("env") or {}).items()))),
        ("secrets", " ".join(run.get("secrets") or [])),
    ]
    output = f"{run.get('output_bytes', 0)} bytes"
    if run.get("output_truncated"):
        output += f" (truncated: {run.get('dropped_bytes', 0)} more bytes dropped)"
    pairs.append(("output", output))
    if run.get("survivors"):
        pairs.append(("survivors", " ".join(str(p) for p in run["survivors"])))
    pairs.append(("script", str(run.get("script") or "").rstrip("\n")))
    return details([(k, v) for k, v in pairs if v != ""], colour)


def command_details(command: dict[str, Any], colour: bool, now: datetime | None = None) -> str:
    pairs: list[tuple[str, str]] = [
        ("name", str(command.get("name", ""))),
        ("id", str(command.get("id", ""))),
        ("description", str(command.get("description") or "")),
        ("pool", str(command.get("pool") or "")),
        ("timeout", f"{command['timeout_s']:g}s" if command.get("timeout_s") else "none"),
        ("stop grace", f"{float(command.get('stop_grace_s') or 0):g}s"),
        ("version", str(command.get("version", ""))),
        ("created", _when(command.get("created_at"), now)),
        ("updated", _when(command.get("updated_at"), now)),
        ("env", "\n".join(f"{k}={v}" for k, v in sorted((command.get("env") or {}).items()))),
        ("secrets", " ".join(command.get("secrets") or [])),
        ("script", str(command.get("script") or "").rstrip("\n")),
    ]
    return details([(k, v) for k, v in pairs if v != ""], colour)


def commands_table(commands: Sequence[dict[str, Any]], colour: bool, width: int = 100) -> str:
    headers = ["NAME", "VERSION", "POOL", "UPDATED", "DESCRIPTION"]
    rows = [
        [
            str(c.get("name", "")),
            str(c.get("version", "")),
            str(c.get("pool", "")),
            ago(c.get("updated_at")),
            str(c.get("description") or "") or first_line(str(c.get("script") or "")),
        ]
        for c in commands
    ]
    fixed = sum(max(len(headers[i]), *(len(r[i]) for r in rows)) + 2 for i in range(4)) if rows else 0
    for row in rows:
        row[-1] = truncate(row[-1], max(20, width - fixed))
    return table(headers, rows, colour)


def executors_table(executors: Sequence[dict[str, Any]], colour: bool, now: datetime | None = None) -> str:
    headers = ["HOST", "STATE", "POOLS", "RUNNING", "HEARTBEAT", "VERSION"]
    rows = []
    for e in executors:
        state = str(e.get("state", ""))
        rows.append(
            [
                str(e.get("host", "")),
                paint(state, STATUS_COLOURS.get(state), colour),
                ",".join(str(p) for p in e.get("pools") or []) or "-",
                f"{e.get('running', 0)}/{e.get('capacity', 0)}",
                ago(e.get("last_heartbeat"), now),
                str(e.get("version") or "-"),
            ]
        )
    return table(headers, rows, colour)


def tokens_table(tokens: Sequence[dict[str, Any]], colour: bool, now: datetime | None = None) -> str:
    headers = ["ID", "ROLE", "NAME", "CREATED", "BY", "REVOKED"]
    rows = [
        [
            str(t.get("id", "")),
            str(t.get("role", "")),
            str(t.get("name") or "-"),
            ago(t.get("created_at"), now),
            str(t.get("created_by") or "-"),
            f"{ago(t.get('revoked_at'), now)} by {t.get('revoked_by') or '-'}" if t.get("revoked_at") else "",
        ]
        for t in tokens
    ]
    return table(headers, rows, colour)


def _when(value: Any, now: datetime | None) -> str:
    when = parse_time(value) if isinstance(value, str) else None
    if when is None:
        return ""
    return f"{when.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')} ({ago(when, now)})"


def _shell_quote(arg: str) -> str:
    return shlex.quote(arg)
