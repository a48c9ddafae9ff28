"""The client's pure parts: tables, times, colours, option parsing, SSE parsing, exit statuses."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from scriptbus.client import render
from scriptbus.client.api import error_detail
from scriptbus.client.commands import UsageError, build_parser, parse_env, parse_seconds
from scriptbus.client.follow import Outcome, SseEvent, exit_status, parse_sse, sse_lines

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def iso(delta_s: float) -> str:
    return (NOW - timedelta(seconds=delta_s)).isoformat()


def run(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "3f2a9c1e-0000-4000-8000-000000000001",
        "status": "succeeded",
        "exit_code": 0,
        "signal": None,
        "host": "build-1",
        "created_at": iso(75),
        "started_at": iso(74),
        "finished_at": iso(70),
        "duration_s": 4.0,
        "description": "",
        "script": "\n  echo hello\necho more\n",
    }
    base.update(fields)
    return base


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_relative_times_and_durations() -> None:
    assert render.ago(iso(0.2), NOW) == "just now"
    assert render.ago(iso(12), NOW) == "12s ago"
    assert render.ago(iso(5 * 60 + 3), NOW) == "5m ago"
    assert render.ago(iso(3 * 3600), NOW) == "3h ago"
    assert render.ago(iso(2 * 86400 + 5), NOW) == "2d ago"
    assert render.ago(None, NOW) == "-"
    # A clock a little ahead of ours never shows a negative age.
    assert render.ago(iso(-3), NOW) == "just now"
    assert render.duration(None) == "-"
    assert render.duration(0.4234) == "0.42s"
    assert render.duration(12.34) == "12.3s"
    assert render.duration(245) == "4m05s"
    assert render.duration(2 * 3600 + 3 * 60 + 9) == "2h03m"
    assert render.duration(3 * 86400 + 4 * 3600) == "3d04h"


def test_runs_table_is_aligned_plain_and_truncates_the_description() -> None:
    runs = [
        run(),
        run(
            id="abcdef12-0000-4000-8000-000000000002",
            status="failed",
            exit_code=3,
            host="h",
            description="x" * 300,
        ),
        run(id="99999999-0000", status="queued", exit_code=None, host=None, started_at=None, duration_s=None),
        run(id="77777777-0000", status="killed", exit_code=None, signal=9),
    ]
    text = render.runs_table(runs, colour=False, width=100, now=NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "EXIT", "HOST", "CREATED", "DURATION", "DESCRIPTION"]
    assert "\x1b" not in text
    # Columns start at the same place on every line.
    starts = [line.index("STATUS") if i == 0 else None for i, line in enumerate(lines)]
    col = starts[0]
    assert lines[1][col:].startswith("succeeded") and lines[2][col:].startswith("failed")
    assert lines[1].startswith("3f2a9c1e  ")
    assert "echo hello" in lines[1] and "echo more" not in lines[1]
    assert max(len(line) for line in lines) <= 100
    assert lines[2].endswith("…")
    assert " SIGKILL " in lines[4]
    assert "1m ago" in lines[1] and "4.00s" in lines[1]


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    assert render.use_colour(Tty(), {}) is True
    assert render.use_colour(io.StringIO(), {}) is False
    assert render.use_colour(Tty(), {"NO_COLOR": "1"}) is False
    # An empty NO_COLOR does not count (no-color.org).
    assert render.use_colour(Tty(), {"NO_COLOR": ""}) is True
    coloured = render.runs_table([run(), run(status="failed", exit_code=1)], colour=True, now=NOW)
    plain = render.runs_table([run(), run(status="failed", exit_code=1)], colour=False, now=NOW)
    assert "\x1b[32msucceeded\x1b[0m" in coloured and "\x1b[31mfailed\x1b[0m" in coloured
    # Colour codes do not shift the columns.
    strip = render._ANSI.sub("", coloured)
    assert strip == plain


def test_run_details_show_the_facts_and_skip_empty_ones() -> None:
    text = render.run_details(
        run(args=["a b", "c"], env={"B": "2", "A": "1"}, reason="", pid=42, output_bytes=10),
        colour=False,
        now=NOW,
    )
    assert "id:" in text and "3f2a9c1e-0000-4000-8000-000000000001" in text
    assert "args:       'a b' c" in text
    assert "env:        A=1\n            B=2" in text
    assert "reason" not in text
    assert text.rstrip().endswith("echo more")


def test_executors_table() -> None:
    text = render.executors_table(
        [
            {
                "host": "x",
                "state": "online",
                "pools": ["default", "gpu"],
                "running": 2,
                "capacity": 64,
                "last_heartbeat": iso(1.5),
                "version": "0.1.0",
            },
            {
                "host": "long-host-name",
                "state": "lost",
                "pools": [],
                "running": 0,
                "capacity": 8,
                "last_heartbeat": iso(600),
                "version": "0.1.0",
            },
        ],
        colour=False,
        now=NOW,
    )
    lines = text.splitlines()
    assert lines[0].split() == ["HOST", "STATE", "POOLS", "RUNNING", "HEARTBEAT", "VERSION"]
    assert lines[1].split()[:4] == ["x", "online", "default,gpu", "2/64"]
    assert "10m ago" in lines[2] and lines[2].split()[2] == "-"


def test_env_options() -> None:
    assert parse_env(["A=1", "B=x=y", "C="], {}) == {"A": "1", "B": "x=y", "C": ""}
    assert parse_env(["HOME"], {"HOME": "/root"}) == {"HOME": "/root"}
    with pytest.raises(UsageError, match="not set here"):
        parse_env(["NOPE"], {})
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_env(["=1"], {})


def test_durations_as_options() -> None:
    assert parse_seconds("30") == 30
    assert parse_seconds("1.5m") == 90
    assert parse_seconds("2h") == 7200
    assert parse_seconds("500ms") == 0.5
    for bad in ("", "5x", "-3", "m"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seconds(bad)


def test_run_arguments_after_double_dash_keep_their_spaces_and_dashes() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "--command", "backup", "--", "a b", "-x", "--detach"])
    assert args.command == "backup" and args.words == ["a b", "-x", "--detach"] and not args.detach
    args = parser.parse_args(["--json", "run", "echo $1", "one", "--env", "A=1", "-e", "B=2", "--detach"])
    assert args.json and args.detach and args.words == ["echo $1", "one"] and args.env == ["A=1", "B=2"]
    # A global option after the subcommand counts too, and does not reset one given before it.
    assert parser.parse_args(["ps", "--json"]).json
    assert parser.parse_args(["--api", "http://h:1", "ps"]).api == "http://h:1"


def test_sse_parsing() -> None:
    lines = [
        ": keep-alive",
        "id: 5",
        "event: output",
        'data: {"stream": "stdout"}',
        "",
        "id:6",
        "event: run.finished",
        "data: line one",
        "data: line two",
        "",
        "",
        "data: no id or type",
        "",
    ]
    assert list(parse_sse(lines)) == [
        SseEvent("5", "output", '{"stream": "stdout"}'),
        SseEvent("6", "run.finished", "line one\nline two"),
        # The last id carries over (the SSE rules), the type defaults to `message`.
        SseEvent("6", "message", "no id or type"),
    ]


def test_sse_lines_split_only_at_cr_and_lf_even_across_chunks() -> None:
    body = 'id: 1\r\nevent: output\r\ndata: {"text": "a\u2028b\x85c\x0cd"}\r\n\r\nid: 2\rdata: x\n\n'.encode()
    expected = ["id: 1", "event: output", 'data: {"text": "a\u2028b\x85c\x0cd"}', "", "id: 2", "data: x", ""]
    assert list(sse_lines([body])) == expected
    # Any split of the body into chunks gives the same lines, a CRLF cut in half included.
    for cut in range(1, len(body)):
        assert list(sse_lines([body[:cut], body[cut:]])) == expected, cut
    assert list(sse_lines(bytes([b]) for b in body)) == expected
    events = list(parse_sse(sse_lines([body])))
    assert events[0].data == '{"text": "a\u2028b\x85c\x0cd"}'


def test_exit_statuses_mirror_the_script() -> None:
    assert exit_status(Outcome("succeeded", 0)) == (0, "")
    assert exit_status(Outcome("failed", 7)) == (7, "")
    assert exit_status(Outcome("terminated", None, 9)) == (137, "terminated by SIGKILL")
    assert exit_status(Outcome("stopped", None, 15)) == (143, "stopped (SIGTERM)")
    assert exit_status(Outcome("killed", None, 9))[0] == 137
    assert exit_status(Outcome("timed_out", None, 15)) == (1, "timed out")
    assert exit_status(Outcome("cancelled")) == (1, "cancelled")
    assert exit_status(Outcome("lost", reason="executor x vanished")) == (1, "lost: executor x vanished")


def test_error_details_become_one_line() -> None:
    assert error_detail(httpx.Response(404, json={"detail": "run x not found"})) == "run x not found"
    validation = {
        "detail": [
            {"loc": ["body", "script"], "msg": "Value error, must not be empty", "type": "value_error"},
            {"loc": ["query", "limit"], "msg": "Input should be >= 1", "type": "x"},
        ]
    }
    assert error_detail(httpx.Response(422, json=validation)) == (
        "script: Value error, must not be empty; limit: Input should be >= 1"
    )
    assert error_detail(httpx.Response(502, text="<html>bad gateway</html>\nmore")) == "<html>bad gateway</html>"
    assert error_detail(httpx.Response(500, text="")) == "HTTP 500 Internal Server Error"


def test_the_dispatcher_knows_every_client_command() -> None:
    from scriptbus import cli
    from scriptbus.client import CLIENT_COMMANDS

    assert set(cli.CLIENT) == set(CLIENT_COMMANDS)
    assert not set(cli.CLIENT) & set(cli.SERVICES)
