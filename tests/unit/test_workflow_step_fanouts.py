"""A `fan_out` step's attempt: its fan-out request, its failure when nothing matches, and how the
fan-out's events read as the attempt's start and end."""

from __future__ import annotations

import pytest

from scriptbus.events.fanouts import FanoutFinished, FanoutHostDispatched, FanoutRequested, FanoutStatus
from scriptbus.events.runs import RunFinished, RunStarted
from scriptbus.events.statuses import RunStatus
from scriptbus.events.workflows import StepFanOut, step_fanout_id, step_run_id
from scriptbus.scheduler.fleet import Fleet
from scriptbus.scheduler.workflows.state import WorkflowRunState
from scriptbus.scheduler.workflows.step_fanouts import FleetNotHeard, attempt_event, fanout_step_request
from tests.helpers.fleet import heartbeat
from tests.helpers.workflows import request, step


def _state() -> WorkflowRunState:
    roll = step("roll", 1, function=None, script="echo hi", fan_out=StepFanOut(labels={"role": "web"}, max_parallel=1))
    return WorkflowRunState.requested(request([roll]))


def heard(fleet: Fleet) -> Fleet:
    fleet.listening_since = 0.0
    return fleet


def test_the_attempt_fans_out_over_the_hosts_matching_now_under_a_derived_id() -> None:
    state = _state()
    fleet = Fleet(lost_after_s=3)
    for host in ("b", "a"):
        fleet.observe(heartbeat(host, f"e-{host}").model_copy(update={"labels": {"role": "web"}}), now=0)
    run_id = step_run_id(state.wfrun_id, "roll", 2)
    # Just started listening: the replay of the fleet may not be all in, so no hosts are matched yet.
    fleet.listening_since = 9.0
    with pytest.raises(FleetNotHeard):
        fanout_step_request(state, state.steps["roll"].spec, 2, run_id, None, fleet, 10.0)
    heard(fleet)
    event = fanout_step_request(state, state.steps["roll"].spec, 2, run_id, None, fleet, 10.0)
    assert isinstance(event, FanoutRequested)
    assert event.fanout_id == step_fanout_id(state.wfrun_id, "roll", 2)
    assert (event.hosts, event.max_parallel, event.script, event.labels) == (["a", "b"], 1, "echo hi", {"role": "web"})
    # Asked again (after a crash), it is the same message.
    again = fanout_step_request(state, state.steps["roll"].spec, 2, run_id, None, fleet, 10.0)
    assert isinstance(again, FanoutRequested) and again.event_id == event.event_id


def test_nothing_matching_fails_the_attempt_naming_the_filter() -> None:
    state = _state()
    run_id = step_run_id(state.wfrun_id, "roll", 1)
    event = fanout_step_request(state, state.steps["roll"].spec, 1, run_id, None, heard(Fleet(lost_after_s=3)), 10.0)
    assert isinstance(event, RunFinished)
    assert (event.run_id, event.status) == (run_id, RunStatus.FAILED)
    assert "no live executor matches any pool, label role=web" in event.reason


def test_the_fanouts_first_host_starts_the_attempt_and_its_end_ends_it() -> None:
    started = attempt_event(FanoutHostDispatched(fanout_id="f", host="a", attempt=1, run_id="x"), "step-run")
    assert isinstance(started, RunStarted) and started.run_id == "step-run"
    for status, ending in (
        (FanoutStatus.SUCCEEDED, RunStatus.SUCCEEDED),
        (FanoutStatus.FAILED, RunStatus.FAILED),
        (FanoutStatus.STOPPED, RunStatus.STOPPED),
    ):
        ended = attempt_event(FanoutFinished(fanout_id="f", status=status), "step-run")
        assert isinstance(ended, RunFinished) and ended.status is ending and "fan-out f" in ended.reason
