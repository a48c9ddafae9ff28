"""A workflow step's run request: a saved command, a program on PATH with params as arguments, or a script."""

from __future__ import annotations

import subprocess

from scriptbus.events import CommandCreated
from scriptbus.events.workflows import StepSpec, decision_id, step_run_id
from scriptbus.scheduler.workflows.state import fold
from scriptbus.scheduler.workflows.step_runs import step_request
from tests.helpers.workflows import request


def test_a_program_on_path_gets_params_as_its_arguments_even_with_odd_characters() -> None:
    spec = StepSpec(name="t22", place=2, function="printf", params=["%s|", "a b", "$HOME", "'q'"])
    state = fold([request([spec])])
    run_id = step_run_id(state.wfrun_id, "t22", 1)
    req = step_request(state, spec, 1, run_id, None)
    out = subprocess.run(["bash", "-c", req.script, "bash", *req.args], capture_output=True, text=True, check=True)
    assert out.stdout == "a b|$HOME|'q'|"
    assert (req.run_id, req.event_id) == (run_id, decision_id(state.wfrun_id, "run.requested", "t22", 1))
    assert (req.workflow_run_id, req.workflow_step, req.attempt, req.command_id) == (state.wfrun_id, "t22", 1, None)
    assert (req.stop_grace_s, req.hold_max_s) == (6.0, 600.0)


def test_a_saved_command_runs_its_script_with_the_step_env_over_its_own() -> None:
    spec = StepSpec(name="t11", place=1, function="simple", params=["5"], env={"B": "step"}, pool="gpu")
    command = CommandCreated(
        command_id="c1", name="simple", script='sleep "$1"', env={"A": "cmd", "B": "cmd"}, timeout_s=30, pool="slow"
    )
    state = fold([request([spec])])
    req = step_request(state, spec, 2, step_run_id(state.wfrun_id, "t11", 2), command)
    assert (req.script, req.args, req.env, req.timeout_s, req.pool, req.command_id) == (
        'sleep "$1"',
        ["5"],
        {"A": "cmd", "B": "step"},
        30,
        "gpu",
        "c1",
    )
    assert req.attempt == 2


def test_an_inline_script_gets_params_as_positional_arguments() -> None:
    spec = StepSpec(name="s", place=1, script='echo "$1"', params=["x"], timeout_s=5, host="box1")
    state = fold([request([spec])])
    req = step_request(state, spec, 1, step_run_id(state.wfrun_id, "s", 1), None)
    assert (req.script, req.args, req.timeout_s, req.host, req.target) == ('echo "$1"', ["x"], 5, "box1", "box1")


def test_a_step_running_a_saved_command_gets_the_commands_secrets() -> None:
    spec = StepSpec(name="t1", place=1, function="deploy")
    command = CommandCreated(command_id="c1", name="deploy", script="./deploy", secrets=["DB_PASSWORD"])
    state = fold([request([spec])])
    req = step_request(state, spec, 1, step_run_id(state.wfrun_id, "t1", 1), command)
    assert req.secrets == ["DB_PASSWORD"]
    assert step_request(state, spec, 1, step_run_id(state.wfrun_id, "t1", 1), None).secrets == []
