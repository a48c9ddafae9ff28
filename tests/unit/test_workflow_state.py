"""A workflow run's state folded from its events: what users see, and that a replay changes nothing."""

from __future__ import annotations

import random

import pytest

from scriptbus.events import RunFinished, RunStarted, RunStatus, Subjects, decode_event, encode_event, subject_for
from scriptbus.events.workflows import (
    WFRUN_EVENT_TYPES,
    StepStatus,
    WfRunEvent,
    WfRunStepCancelled,
    WfRunStepHeld,
    WfRunStepReleased,
    WfRunStepSkipped,
    WfRunStepStopIssued,
    WorkflowRunStatus,
    step_run_id,
)
from scriptbus.scheduler.workflows.state import WorkflowRunState, fold, kept_on_retry, spad_status
from tests.helpers.workflows import T0, WorkflowRunSim, request, step


def finished_wf1() -> WorkflowRunSim:
    """Seed 004's wf1 (t11 in the background, t12 awaited) where t12 fails once, is rerun, and all ends well."""
    sim = WorkflowRunSim(request([step("t11", 1, "parallel"), step("t12", 2, retry_backoff_s=0)]))
    sim.decide()
    sim.started("t11", "t12")
    sim.at(1).failed("t12", 3)
    sim.decide()
    sim.started("t12")
    sim.at(2).succeeded("t12")
    sim.decide()
    sim.at(3).succeeded("t11")
    sim.decide()
    assert sim.status() is WorkflowRunStatus.SUCCEEDED
    return sim


def test_the_fold_of_the_stored_events_is_the_live_state() -> None:
    sim = finished_wf1()
    assert fold(sim.events) == sim.state


def test_a_replay_with_every_event_twice_gives_the_same_state() -> None:
    sim = finished_wf1()
    assert fold(sim.events + sim.events) == sim.state
    assert fold([e for e in sim.events for _ in range(2)]) == sim.state


def test_step_run_events_read_before_their_dispatch_give_the_same_state() -> None:
    """The driver reads the run's events and its step runs' events on two subscriptions; either may lag."""
    sim = finished_wf1()
    run_events = [e for e in sim.events if isinstance(e, RunStarted | RunFinished)]
    wfrun_events = [e for e in sim.events if not isinstance(e, RunStarted | RunFinished)]
    assert fold(run_events + wfrun_events) == sim.state
    rng = random.Random(4)
    for _ in range(20):
        # Each subscription keeps its own order; how they interleave is arbitrary.
        a, b, merged = list(wfrun_events), list(run_events), []
        while a or b:
            merged.append((a if a and (not b or rng.random() < 0.5) else b).pop(0))
        assert fold(merged) == sim.state


def test_the_settlements_alone_tell_how_each_attempt_ended() -> None:
    """After a crash the run's own subject is enough, even if the step runs' events are long gone."""
    sim = finished_wf1()
    own = [e for e in sim.events if isinstance(e, WfRunEvent)]
    state = fold(own)
    assert state.status is WorkflowRunStatus.SUCCEEDED
    t12 = state.steps["t12"]
    assert [(a.attempt, a.status, a.exit_code) for a in t12.attempts] == [
        (1, RunStatus.FAILED, 3),
        (2, RunStatus.SUCCEEDED, 0),
    ]


def test_every_attempt_is_listed_with_its_derived_run_id() -> None:
    state = finished_wf1().state
    t12 = state.steps["t12"]
    assert t12.attempt == 2
    assert [a.run_id for a in t12.attempts] == [step_run_id("wr-1", "t12", 1), step_run_id("wr-1", "t12", 2)]
    assert t12.run_id == step_run_id("wr-1", "t12", 2)
    assert (t12.attempts[0].host, t12.attempts[0].started_at is not None) == ("h1", True)


def test_the_first_finish_of_a_run_wins() -> None:
    sim = WorkflowRunSim(request([step("a", 1)]))
    sim.decide()
    sim.started("a")
    sim.failed("a", 2)
    sim.finished("a", RunStatus.LOST, reason="executor gone")
    assert sim.state.steps["a"].current is not None
    assert (sim.state.steps["a"].current.status, sim.state.steps["a"].current.exit_code) == (RunStatus.FAILED, 2)


def test_events_of_other_runs_are_ignored() -> None:
    sim = WorkflowRunSim(request([step("a", 1)]))
    sim.decide()
    before = fold(sim.events)
    other = WorkflowRunSim(request([step("a", 1)], wfrun_id="wr-2"))
    other.decide()
    other.started("a")
    other.succeeded("a")
    other.decide()
    state = fold(sim.events + other.events[1:])
    assert state.steps == before.steps and state.status == before.status


def test_run_statuses_through_a_stop() -> None:
    sim = WorkflowRunSim(request([step("a", 1)]))
    assert sim.status() is WorkflowRunStatus.QUEUED and sim.statuses() == {"a": "pending"}
    sim.decide()
    assert sim.status() is WorkflowRunStatus.RUNNING and sim.statuses() == {"a": "queued"}
    sim.started("a")
    assert sim.statuses() == {"a": "running"}
    sim.stop()
    assert sim.status() is WorkflowRunStatus.STOPPING
    sim.decide()
    assert sim.statuses() == {"a": "stopping"}
    sim.finished("a", RunStatus.STOPPED, signal=15)
    sim.decide()
    assert sim.statuses() == {"a": "stopped"} and sim.status() is WorkflowRunStatus.STOPPED
    assert sim.state.finished_at == T0


@pytest.mark.parametrize(
    ("ending", "fields", "seed_name"),
    [
        (RunStatus.SUCCEEDED, {"exit_code": 0}, "success0"),
        (RunStatus.FAILED, {"exit_code": 1}, "error(1)"),
        (RunStatus.FAILED, {"exit_code": 127}, "error(127)"),
        (RunStatus.TERMINATED, {"signal": 15}, "terminated(-15)"),
        (RunStatus.TIMED_OUT, {"signal": 9}, "terminated(-9)"),
        (RunStatus.KILLED, {"signal": 9, "survivors": [4242]}, "immortal(4242)"),
        (RunStatus.KILLED, {"signal": 9}, "killed"),
        (RunStatus.LOST, {}, "lost"),
    ],
)
def test_each_ending_has_its_seed_004_name(ending: RunStatus, fields: dict[str, object], seed_name: str) -> None:
    sim = WorkflowRunSim(request([step("a", 1, retries=0, lost_retries=0)]))
    sim.decide()
    sim.started("a")
    sim.finished("a", ending, **fields)  # type: ignore[arg-type]
    sim.decide()
    assert spad_status(sim.state.steps["a"]) == seed_name


def test_seed_004_names_before_during_and_after_a_run() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retry_backoff_s=5), step("b", 2)]))
    assert [spad_status(s) for s in sim.state.steps.values()] == ["new", "new"]
    sim.decide()
    sim.started("a")
    assert spad_status(sim.state.steps["a"]) == "running"
    sim.hold("a")
    assert spad_status(sim.state.steps["a"]) == "waiting"
    sim.release("a")
    sim.failed("a")
    sim.decide()
    assert spad_status(sim.state.steps["a"]) == "rerun"
    sim.stop()
    sim.decide()
    # The rerun that never came was stopped; b never ran.
    assert [spad_status(s) for s in sim.state.steps.values()] == ["stopped", "not run"]


def test_a_retry_keeps_the_steps_that_succeeded_before_the_first_that_did_not() -> None:
    sim = WorkflowRunSim(request([step("a", 1), step("b", 2, retries=0), step("c", 3)]))
    sim.decide()
    sim.started("a")
    sim.succeeded("a")
    sim.decide()
    sim.started("b")
    sim.failed("b")
    sim.decide()
    assert sim.status() is WorkflowRunStatus.FAILED
    assert kept_on_retry(sim.state) == {"a": step_run_id("wr-1", "a", 1)}


def test_every_workflow_run_event_round_trips_and_has_its_subject() -> None:
    """The contract: each event type decodes to itself and is stored under its run's subjects."""
    sim = finished_wf1()
    sim.stop()  # too late: recorded, changes nothing
    examples: list[WfRunEvent] = [e for e in sim.events if isinstance(e, WfRunEvent)]
    examples += [
        WfRunStepHeld(wfrun_id="wr-1", step="t11", attempt=1, held_by="script"),
        WfRunStepReleased(wfrun_id="wr-1", step="t11", released_by="api"),
        WfRunStepSkipped(wfrun_id="wr-1", step="t12", reason="step t11 failed"),
        WfRunStepCancelled(wfrun_id="wr-1", step="t12", reason="workflow run stopped"),
        WfRunStepStopIssued(wfrun_id="wr-1", step="t11", attempt=1, run_id="r", reason="stop"),
    ]
    assert {type(e) for e in examples} == set(WFRUN_EVENT_TYPES)
    s = Subjects("sb")
    for event in examples:
        assert decode_event(encode_event(event)) == event
        assert subject_for(s, event) == f"sb.wfruns.wr-1.{event.type.removeprefix('wfrun.')}"
    assert fold(sim.events).status is WorkflowRunStatus.SUCCEEDED


def test_a_step_state_knows_what_the_sequence_may_pass() -> None:
    state = WorkflowRunState.requested(
        request([step("bg", 1, "parallel"), step("ok", 2, continue_on_error=True, retries=0), step("c", 3)])
    )
    steps = state.steps
    assert [s.passed for s in steps.values()] == [False, False, False]
    steps["bg"].status = StepStatus.QUEUED
    steps["ok"].status = StepStatus.FAILED
    assert [s.passed for s in steps.values()] == [True, True, False]
