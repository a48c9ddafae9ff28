"""`scriptbus wf`'s pure parts: the steps table, seed 004's status lines, summaries, exit statuses, the
line-prefixing of step output, what a follower reports as changed, the remembered project, the parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scriptbus.client import selection, workflow_render
from scriptbus.client.commands import UsageError, build_parser
from scriptbus.client.prefixed_output import Line, LineSink
from scriptbus.client.workflow_follow import change_lines, prefix_width, step_attempts, step_prefix
from scriptbus.client.workflows import read_document

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def iso(delta_s: float) -> str:
    return (NOW - timedelta(seconds=delta_s)).isoformat()


def attempt(n: int, run_id: str, status: str, exit_code: int | None = None, sig: int | None = None) -> dict[str, Any]:
    return {"attempt": n, "run_id": run_id, "status": status, "exit_code": exit_code, "signal": sig}


def step(name: str, status: str, spad: str, attempts: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "place": fields.pop("place", 1),
        "exec": fields.pop("exec", "await"),
        "status": status,
        "spad_status": spad,
        "attempt": len(attempts),
        "run_id": attempts[-1]["run_id"] if attempts else None,
        "attempts": attempts,
        "next_retry_at": None,
        "survivors": [],
        "held": False,
        "reason": "",
        **fields,
    }


def wfrun(status: str, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "7c1d2e3f-0000-4000-8000-000000000001",
        "project": "pr1",
        "workflow": "wf1",
        "version": 2,
        "status": status,
        "task": None,
        "retry_of": None,
        "failed_step": None,
        "reason": "",
        "created_at": iso(10),
        "started_at": iso(9),
        "finished_at": None,
        "steps": steps,
        **fields,
    }


FAILED = wfrun(
    "failed",
    [
        step(
            "t11",
            "failed",
            "error(1)",
            [attempt(1, "aaaaaaaa-1", "failed", 1), attempt(2, "bbbbbbbb-2", "failed", 1)],
            exec="parallel",
        ),
        step("t12", "skipped", "not run", [], place=2),
        step("t13", "stopped", "immortal(4242)", [attempt(1, "cccccccc-3", "killed", sig=9)], survivors=[4242]),
    ],
    failed_step="t11",
    finished_at=iso(1),
)


def test_spad_lines_are_seed_004_names_one_task_a_line() -> None:
    assert workflow_render.spad_lines(FAILED) == "t11 error(1)\nt12 not run\nt13 immortal(4242)"
    assert workflow_render.spad_lines(FAILED, "t12") == "t12 not run"


def test_steps_table_shows_status_seed_name_attempt_exit_and_notes() -> None:
    text = workflow_render.steps_table(FAILED, colour=False, now=NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["STEP", "EXEC", "STATUS", "SPAD", "ATTEMPT", "EXIT", "RUN", "NOTE"]
    assert lines[1].split() == ["t11", "parallel", "failed", "error(1)", "2", "1", "bbbbbbbb"]
    assert lines[2].split() == ["t12", "await", "skipped", "not", "run", "-", "-", "-"]
    assert lines[3].split() == [
        "t13",
        "await",
        "stopped",
        "immortal(4242)",
        "1",
        "SIGKILL",
        "cccccccc",
        "survivors",
        "4242",
    ]
    assert "\x1b[" not in text
    assert "\x1b[31mfailed\x1b[0m" in workflow_render.steps_table(FAILED, colour=True, now=NOW)


def test_step_notes_say_held_and_when_a_retry_is_due() -> None:
    held = step("t1", "running", "waiting", [attempt(1, "r", "running")], held=True)
    assert workflow_render.step_note(held, NOW) == "held (waiting)"
    later = (NOW + timedelta(seconds=30)).isoformat()
    retrying = step("t1", "retrying", "rerun", [attempt(1, "r", "failed", 2)], next_retry_at=later)
    assert workflow_render.step_note(retrying, NOW) == "retry due"


def test_run_heading_names_the_workflow_its_status_and_why_it_failed() -> None:
    heading = workflow_render.run_heading(FAILED, colour=False, now=NOW)
    assert heading == "pr1/wf1  run 7c1d2e3f  failed  v2  started 9s ago  took 8.00s  (step t11 failed)"


def test_runs_table_lists_runs_with_their_notes() -> None:
    retry = wfrun("running", [], retry_of="7c1d2e3f-0000-4000-8000-000000000001", id="0badcafe-1")
    text = workflow_render.runs_table([retry, FAILED], colour=False, now=NOW)
    rows = [line.split() for line in text.splitlines()]
    assert rows[0] == ["ID", "PROJECT", "WORKFLOW", "STATUS", "VERSION", "CREATED", "DURATION", "NOTE"]
    assert rows[1][:4] == ["0badcafe", "pr1", "wf1", "running"] and rows[1][-3:] == ["retry", "of", "7c1d2e3f"]
    assert rows[2][:4] == ["7c1d2e3f", "pr1", "wf1", "failed"] and rows[2][-3:] == ["step", "t11", "failed"]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("succeeded", 0),
        ("failed", 1),
        ("timed_out", 1),
        ("stopped", 3),
        ("killed", 3),
        ("cancelled", 3),
    ],
)
def test_exit_status_of_a_followed_workflow_run(status: str, code: int) -> None:
    assert workflow_render.exit_status(status) == code


def test_project_summary_and_the_project_a_document_names() -> None:
    doc = {
        "context": {
            "project": {
                "name": "pr1",
                "workflows": [
                    {"name": "wf1", "tasks": [{"name": "t12", "place": 2}, {"name": "t11", "place": 1}]},
                    {"name": "wf3", "tasks": []},
                ],
            }
        }
    }
    assert workflow_render.project_summary(doc) == "pr1: wf1 (t11, t12), wf3 (no tasks)"
    assert workflow_render.document_project(doc) == "pr1"
    assert workflow_render.document_project({"context": []}) is None
    assert workflow_render.document_project([1]) is None


def test_line_sink_hands_over_whole_lines_prefixed_and_the_last_partial_on_close() -> None:
    got: list[Line] = []
    sink = LineSink("t11 | ", False, got.append)
    sink.write(b"one\ntw")
    sink.write(b"o\n\nthr\xff")
    assert got == [Line(False, "t11 | one"), Line(False, "t11 | two"), Line(False, "t11 | ")]
    sink.close()
    assert got[-1] == Line(False, "t11 | thr\ufffd")
    sink.close()
    assert len(got) == 4


def test_step_prefix_pads_names_and_marks_restarts() -> None:
    assert step_prefix("t1", 1, 4) == "t1   | "
    assert step_prefix("t1", 2, 4) == "t1#2 | "
    assert step_prefix("loop", 1, 4) == "loop | "


def test_step_attempts_are_every_started_attempt_and_not_a_step_kept_from_a_retried_run() -> None:
    kept = step("t0", "succeeded", "success0", [], run_id="old-run", reason="succeeded in x")
    assert step_attempts(wfrun("running", [kept, *FAILED["steps"]])) == [
        ("t11", 1, "aaaaaaaa-1"),
        ("t11", 2, "bbbbbbbb-2"),
        ("t13", 1, "cccccccc-3"),
    ]


def test_a_fan_out_steps_output_is_each_hosts_run_named_step_at_host() -> None:
    hosts = [{"host": "web-1", "run_id": "r-1"}, {"host": "web-2", "run_id": None}]
    rolled = step("roll", "running", "running", [attempt(1, "step-run", "running")], fanout_id="f", fanout_hosts=hosts)
    run = wfrun("running", [rolled, *FAILED["steps"]])
    assert step_attempts(run)[0] == ("roll@web-1", 1, "r-1")
    assert "step-run" not in {r for _s, _a, r in step_attempts(run)}
    assert prefix_width(run) == len("roll@web-1")


def test_change_lines_report_what_moved_since_the_last_look() -> None:
    queued = wfrun("queued", [step("t11", "pending", "new", []), step("t12", "pending", "new", [])])
    assert change_lines(None, queued) == ["workflow run 7c1d2e3f: queued"]
    running = wfrun(
        "running", [step("t11", "running", "running", [attempt(1, "a", "running")]), step("t12", "pending", "new", [])]
    )
    assert change_lines(queued, running) == ["t11: running (running)", "workflow run 7c1d2e3f: running"]
    assert change_lines(running, running) == []
    assert change_lines(running, FAILED)[:2] == ["t11: failed (error(1)), attempt 2, exit 1", "t12: skipped (not run)"]
    assert change_lines(running, FAILED)[-1] == "workflow run 7c1d2e3f: failed"


def test_the_selected_project_lives_under_xdg_config_home(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path / "home")}
    assert selection.selected_project(env) is None
    assert selection.select_project("pr1", env) == tmp_path / "cfg" / "scriptbus" / "wf.json"
    assert selection.selected_project(env) == "pr1"
    # A relative XDG_CONFIG_HOME is invalid (the spec): ~/.config instead.
    assert selection.state_file({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == Path("/h/.config/scriptbus/wf.json")
    (tmp_path / "cfg" / "scriptbus" / "wf.json").write_text("{torn")
    assert selection.selected_project(env) is None


def test_documents_come_from_a_file_or_the_option_and_bad_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{"context": {"project": {"name": "pr1"}}}')
    assert read_document(str(path), None) == {"context": {"project": {"name": "pr1"}}}
    assert read_document(None, "[1]") == [1]
    with pytest.raises(UsageError, match=r"^-j is not JSON: Expecting value at line 2 column 1$"):
        read_document(None, "[1,\n]")
    with pytest.raises(UsageError, match=r"^cannot read .*missing\.json: No such file"):
        read_document(str(tmp_path / "missing.json"), None)


def test_the_wf_verbs_parse_as_seed_004_writes_them() -> None:
    parser = build_parser()
    args = parser.parse_args(["wf", "set_status", "-w", "wf1", "-t", "t12", "waiting"])
    assert (args.workflow, args.task, args.status, args.project) == ("wf1", "t12", "waiting", None)
    args = parser.parse_args(["wf", "select_project", "pr1"])
    assert args.name == "pr1"
    args = parser.parse_args(["--json", "wf", "status", "-p", "pr1", "-w", "wf1", "--format", "spad"])
    assert args.json and args.format == "spad"
    with pytest.raises(SystemExit):
        parser.parse_args(["wf", "create", "-f", "a.json", "-j", "{}"])
    with pytest.raises(SystemExit):
        parser.parse_args(["wf", "run", "-p", "pr1"])
