"""decide(state, now): the workflow semantics of seed 004 and the issue, with the clock in the test's hands."""

from __future__ import annotations

import copy
from datetime import timedelta

from scriptbus.events import RunStatus
from scriptbus.events.workflow_definitions import create, parse_document
from scriptbus.events.workflows import (
    StepStatus,
    WfRunStepDispatched,
    WfRunStepRetryScheduled,
    WfRunStepSettled,
    WfRunStepStopIssued,
    WorkflowRunStatus,
    step_run_id,
)
from scriptbus.scheduler.workflows.decide import decide
from scriptbus.scheduler.workflows.state import fold, spad_status
from tests.helpers.seed004 import SEED_004_SAMPLE
from tests.helpers.workflows import T0, WorkflowRunSim, dispatched, kinds, request, step


def seed_wf1() -> WorkflowRunSim:
    project = create(None, parse_document(SEED_004_SAMPLE)).after
    assert project is not None
    wf1 = project.workflow("wf1")
    assert wf1 is not None
    return WorkflowRunSim(request(list(wf1.steps)))


# sequence and background ---------------------------------------------------------------------------


def test_seed_wf1_starts_t11_and_t12_together_and_ends_when_both_have() -> None:
    sim = seed_wf1()
    decision = sim.decide()
    assert dispatched(decision.events) == [("t11", 1), ("t12", 1)]
    assert decision.next_wakeup is None
    sim.started("t11", "t12")
    assert sim.statuses() == {"t11": "running", "t12": "running"}
    sim.at(5).succeeded("t12")
    assert kinds(sim.decide()) == [("step_settled", "t12")]
    assert sim.status() is WorkflowRunStatus.RUNNING  # the sequence is over; t11 still runs
    sim.at(6).succeeded("t11")
    assert kinds(sim.decide()) == [("step_settled", "t11"), ("finished", "")]
    assert sim.status() is WorkflowRunStatus.SUCCEEDED
    assert sim.statuses() == {"t11": "succeeded", "t12": "succeeded"}


def test_await_steps_run_one_after_another_by_place_and_parallel_ones_let_the_sequence_go_on() -> None:
    steps = [step("c", 3, "parallel"), step("a", 1), step("d", 4), step("b", 2)]
    sim = WorkflowRunSim(request(steps))
    assert dispatched(sim.decide().events) == [("a", 1)]
    sim.started("a")
    assert sim.decide().events == ()
    sim.succeeded("a")
    assert dispatched(sim.decide().events) == [("b", 1)]
    sim.started("b")
    sim.succeeded("b")
    assert dispatched(sim.decide().events) == [("c", 1), ("d", 1)]
    sim.started("c", "d")
    sim.succeeded("d")
    sim.decide()
    assert sim.status() is WorkflowRunStatus.RUNNING  # waits for its background step c
    sim.succeeded("c")
    sim.decide()
    assert sim.status() is WorkflowRunStatus.SUCCEEDED


def test_a_background_step_that_runs_forever_keeps_the_run_running() -> None:
    sim = WorkflowRunSim(request([step("daemon", 1, "parallel"), step("setup", 2)]))
    sim.decide()
    sim.started("daemon", "setup")
    sim.succeeded("setup")
    decision = sim.at(3600 * 24 * 365).decide()
    assert kinds(decision) == [("step_settled", "setup")]
    assert decision.next_wakeup is None  # nothing to wake for: the next event will tell
    assert sim.status() is WorkflowRunStatus.RUNNING and sim.statuses()["daemon"] == "running"


def test_a_single_task_run_runs_that_task_only() -> None:
    sim = WorkflowRunSim(request([step("t11", 1, "parallel"), step("t12", 2)], task="t12"))
    assert dispatched(sim.decide().events) == [("t12", 1)]
    assert list(sim.state.steps) == ["t12"]
    sim.started("t12")
    sim.succeeded("t12")
    sim.decide()
    assert sim.status() is WorkflowRunStatus.SUCCEEDED


def test_a_retried_run_keeps_the_steps_that_succeeded() -> None:
    sim = WorkflowRunSim(request([step("a", 1), step("b", 2)], kept={"a": "run-of-a"}))
    assert dispatched(sim.decide().events) == [("b", 1)]
    assert sim.state.steps["a"].run_id == "run-of-a" and sim.statuses()["a"] == "succeeded"


def test_an_empty_workflow_succeeds_at_once() -> None:
    sim = WorkflowRunSim(request([]))
    assert kinds(sim.decide()) == [("finished", "")]
    assert sim.status() is WorkflowRunStatus.SUCCEEDED


# failure and retries -------------------------------------------------------------------------------


def test_a_failing_step_is_retried_exactly_once_then_the_run_fails_and_later_steps_are_skipped() -> None:
    sim = WorkflowRunSim(request([step("a", 1), step("b", 2), step("c", 3, "parallel")]))
    sim.decide()
    sim.started("a")
    sim.at(10).failed("a", 1)
    decision = sim.decide()
    assert kinds(decision) == [("step_settled", "a"), ("step_retry_scheduled", "a")]
    assert decision.next_wakeup == T0 + timedelta(seconds=11)  # the default backoff: 1 s
    assert sim.statuses()["a"] == "retrying" and spad_status(sim.state.steps["a"]) == "rerun"
    assert sim.state.steps["a"].next_retry_at == T0 + timedelta(seconds=11)
    assert sim.at(10.5).decide().events == ()  # not yet
    assert dispatched(sim.at(11).decide().events) == [("a", 2)]
    sim.started("a")
    sim.at(12).failed("a", 1)
    decision = sim.decide()
    assert kinds(decision) == [
        ("step_settled", "a"),
        ("step_skipped", "b"),
        ("step_skipped", "c"),
        ("finished", ""),
    ]
    assert sim.status() is WorkflowRunStatus.FAILED
    assert sim.statuses() == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert [(a.attempt, a.status, a.exit_code) for a in sim.state.steps["a"].attempts] == [
        (1, RunStatus.FAILED, 1),
        (2, RunStatus.FAILED, 1),
    ]
    assert len(dispatched(sim.events)) == 2  # a, then a again; nothing else ever started
    assert spad_status(sim.state.steps["a"]) == "error(1)"
    assert sim.at(100).decide().events == ()  # a finished run decides nothing more


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retries=5, retry_backoff_s=2, retry_max_backoff_s=5)]))
    sim.decide()
    delays = []
    for failure in range(5):
        sim.started("a")
        failed_at = 100.0 * (failure + 1)
        sim.at(failed_at).failed("a")
        decision = sim.decide()
        [scheduled] = [e for e in decision.events if isinstance(e, WfRunStepRetryScheduled)]
        delay = (scheduled.retry_at - sim.now).total_seconds()
        delays.append(delay)
        assert decision.next_wakeup == scheduled.retry_at
        assert sim.at(failed_at + delay - 0.001).decide().events == ()
        assert dispatched(sim.at(failed_at + delay).decide().events) == [("a", failure + 2)]
    assert delays == [2, 4, 5, 5, 5]
    sim.started("a")
    sim.at(1000).failed("a")
    sim.decide()
    assert sim.status() is WorkflowRunStatus.FAILED and sim.state.steps["a"].attempt == 6


def test_a_late_decision_still_retries_at_once_when_the_time_has_passed() -> None:
    """A scheduler that was down past a retry's time starts it as soon as it decides again."""
    sim = WorkflowRunSim(request([step("a", 1, retry_backoff_s=30)]))
    sim.decide()
    sim.started("a")
    sim.failed("a")
    sim.decide()
    restarted = fold(sim.events)
    assert dispatched(decide(restarted, T0 + timedelta(hours=3)).events) == [("a", 2)]


def test_only_the_listed_exit_codes_are_retried() -> None:
    def ending(exit_code: int | None, status: RunStatus = RunStatus.FAILED) -> str:
        sim = WorkflowRunSim(request([step("a", 1, retries=3, retry_on_exit_codes=[75], retry_backoff_s=0)]))
        sim.decide()
        sim.started("a")
        sim.finished("a", status, exit_code)
        sim.decide()
        return sim.statuses()["a"] if sim.state.steps["a"].attempt == 1 else "retried"

    assert ending(75) == "retried"
    assert ending(1) == "failed"
    assert ending(None, RunStatus.TIMED_OUT) == "timed_out"
    assert ending(None, RunStatus.TERMINATED) == "terminated"


def test_a_timed_out_step_is_retried_and_then_times_the_run_out() -> None:
    sim = WorkflowRunSim(request([step("slow", 1, timeout_s=5, retry_backoff_s=0)]))
    sim.decide()
    for _ in range(2):
        sim.started("slow")
        sim.finished("slow", RunStatus.TIMED_OUT, signal=15)
        sim.decide()
    assert sim.state.steps["slow"].attempt == 2
    assert sim.status() is WorkflowRunStatus.TIMED_OUT
    assert spad_status(sim.state.steps["slow"]) == "terminated(-15)"


def test_a_final_failure_stops_the_background_steps_and_the_run_fails_once_they_end() -> None:
    sim = WorkflowRunSim(request([step("bg", 1, "parallel"), step("a", 2, retries=0), step("b", 3)]))
    sim.decide()
    sim.started("bg", "a")
    sim.failed("a", 2)
    decision = sim.decide()
    assert kinds(decision) == [("step_settled", "a"), ("step_stop_issued", "bg"), ("step_skipped", "b")]
    [stop] = [e for e in decision.events if isinstance(e, WfRunStepStopIssued)]
    assert stop.run_id == step_run_id("wr-1", "bg", 1) and stop.reason == "step a failed"
    assert sim.statuses() == {"bg": "stopping", "a": "failed", "b": "skipped"}
    assert sim.status() is WorkflowRunStatus.RUNNING
    sim.finished("bg", RunStatus.STOPPED, signal=15)
    assert kinds(sim.decide()) == [("step_settled", "bg"), ("finished", "")]
    assert sim.status() is WorkflowRunStatus.FAILED
    assert sim.statuses()["bg"] == "stopped"
    settled = [e for e in sim.events if isinstance(e, WfRunStepSettled) and e.step == "bg"]
    assert [(e.will_retry, e.fails_run) for e in settled] == [(False, False)]  # our stop is not bg's failure


def test_a_background_step_that_fails_for_good_fails_the_run() -> None:
    sim = WorkflowRunSim(request([step("bg", 1, "parallel", retries=0), step("a", 2), step("b", 3)]))
    sim.decide()
    sim.started("bg", "a")
    sim.failed("bg", 4)
    sim.decide()
    assert sim.statuses() == {"bg": "failed", "a": "stopping", "b": "skipped"}
    sim.finished("a", RunStatus.KILLED, signal=9)
    sim.decide()
    assert sim.status() is WorkflowRunStatus.FAILED and sim.state.failed_step == "bg"


def test_a_step_that_continues_on_error_lets_the_sequence_go_on() -> None:
    sim = WorkflowRunSim(request([step("lint", 1, retries=0, continue_on_error=True), step("build", 2)]))
    sim.decide()
    sim.started("lint")
    sim.failed("lint")
    assert dispatched(sim.decide().events) == [("build", 1)]
    sim.started("build")
    sim.succeeded("build")
    sim.decide()
    assert sim.status() is WorkflowRunStatus.SUCCEEDED
    assert sim.statuses() == {"lint": "failed", "build": "succeeded"}


def test_a_step_run_stopped_by_hand_fails_the_run_and_is_not_retried() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retries=3), step("b", 2)]))
    sim.decide()
    sim.started("a")
    sim.finished("a", RunStatus.STOPPED, signal=15)  # someone stopped the step's run, not the workflow run
    sim.decide()
    assert sim.status() is WorkflowRunStatus.FAILED
    assert sim.statuses() == {"a": "stopped", "b": "skipped"} and sim.state.steps["a"].attempt == 1


# lost steps ----------------------------------------------------------------------------------------


def test_a_lost_step_is_restarted_at_once_from_its_own_budget() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retries=1, lost_retries=2, retry_backoff_s=60)]))
    sim.decide()
    for attempt in (1, 2):
        sim.started("a")
        sim.finished("a", RunStatus.LOST, reason="executor h1 lost")
        decision = sim.decide()
        # No backoff: the old process is gone (the executor reaps it); the step should run again now.
        assert dispatched(decision.events) == [("a", attempt + 1)]
    # Losses did not spend the retry for a failure.
    sim.started("a")
    sim.failed("a")
    decision = sim.decide()
    assert kinds(decision)[-1] == ("step_retry_scheduled", "a")
    assert dispatched(sim.at(60).decide().events) == [("a", 4)]
    sim.started("a")
    sim.finished("a", RunStatus.LOST)
    sim.decide()
    assert sim.statuses() == {"a": "lost"} and sim.status() is WorkflowRunStatus.FAILED
    assert [a.status for a in sim.state.steps["a"].attempts] == [
        RunStatus.LOST,
        RunStatus.LOST,
        RunStatus.FAILED,
        RunStatus.LOST,
    ]


def test_a_step_lost_before_it_started_is_restarted_too() -> None:
    sim = WorkflowRunSim(request([step("a", 1)]))
    sim.decide()
    sim.finished("a", RunStatus.LOST)
    assert dispatched(sim.decide().events) == [("a", 2)]


# stop ----------------------------------------------------------------------------------------------


def test_a_stop_cancels_what_has_not_started_and_stops_what_runs() -> None:
    sim = WorkflowRunSim(request([step("bg", 1, "parallel"), step("waits", 2, "parallel"), step("a", 3), step("b", 4)]))
    sim.decide()
    sim.started("bg", "a")  # `waits` is queued: no executor has it yet
    sim.at(1).stop()
    decision = sim.decide()
    assert kinds(decision) == [
        ("step_stop_issued", "bg"),
        ("step_stop_issued", "waits"),
        ("step_stop_issued", "a"),
        ("step_cancelled", "b"),
    ]
    assert sim.statuses() == {"bg": "stopping", "waits": "stopping", "a": "stopping", "b": "cancelled"}
    assert sim.status() is WorkflowRunStatus.STOPPING
    sim.finished("waits", RunStatus.CANCELLED)
    sim.finished("bg", RunStatus.STOPPED, signal=15)
    sim.decide()
    assert sim.status() is WorkflowRunStatus.STOPPING  # a is still stopping
    sim.finished("a", RunStatus.STOPPED, signal=15)
    sim.decide()
    assert sim.status() is WorkflowRunStatus.STOPPED
    assert sim.statuses() == {"bg": "stopped", "waits": "cancelled", "a": "stopped", "b": "cancelled"}
    assert len(dispatched(sim.events)) == 3


def test_a_step_that_needed_sigkill_makes_the_stop_killed_and_a_survivor_is_named() -> None:
    sim = WorkflowRunSim(request([step("stubborn", 1, "parallel"), step("a", 2)]))
    sim.decide()
    sim.started("stubborn", "a")
    sim.stop()
    sim.decide()
    sim.finished("a", RunStatus.STOPPED, signal=15)
    sim.finished("stubborn", RunStatus.KILLED, signal=9, survivors=[4242])
    sim.decide()
    assert sim.status() is WorkflowRunStatus.KILLED
    assert spad_status(sim.state.steps["stubborn"]) == "immortal(4242)"
    assert spad_status(sim.state.steps["a"]) == "stopped"


def test_a_stop_before_anything_started_cancels_the_run() -> None:
    sim = WorkflowRunSim(request([step("a", 1), step("b", 2)]))
    sim.decide()
    sim.stop()
    sim.decide()
    sim.finished("a", RunStatus.CANCELLED)
    sim.decide()
    assert sim.status() is WorkflowRunStatus.CANCELLED
    assert sim.statuses() == {"a": "cancelled", "b": "cancelled"}


def test_a_stop_during_a_backoff_starts_nothing_not_even_the_retry() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retry_backoff_s=30), step("b", 2)]))
    sim.decide()
    sim.started("a")
    sim.failed("a")
    assert sim.decide().next_wakeup == T0 + timedelta(seconds=30)
    sim.at(10).stop()
    decision = sim.decide()
    assert kinds(decision) == [("step_cancelled", "a"), ("step_cancelled", "b"), ("finished", "")]
    assert decision.next_wakeup is None
    for later in (30, 31, 3600):
        assert sim.at(later).decide().events == ()
    assert dispatched(sim.events) == [("a", 1)]
    assert sim.status() is WorkflowRunStatus.STOPPED
    assert sim.statuses() == {"a": "cancelled", "b": "cancelled"}


def test_a_stop_carried_out_by_the_executors_while_the_scheduler_was_down_ends_right() -> None:
    """The executors act on a workflow run's stop themselves; the scheduler, back, finds the runs ended."""
    sim = WorkflowRunSim(request([step("a", 1, "parallel"), step("b", 2)]))
    sim.decide()  # the runs start, but the scheduler dies before it reads their `run.started`
    sim.stop()
    sim.finished("a", RunStatus.STOPPED, signal=15)
    sim.finished("b", RunStatus.KILLED, signal=9)
    assert kinds(sim.decide()) == [("step_settled", "a"), ("step_settled", "b"), ("finished", "")]
    assert sim.status() is WorkflowRunStatus.KILLED
    assert sim.statuses() == {"a": "stopped", "b": "killed"}


def test_a_stop_whose_steps_all_ended_in_time_is_stopped_even_unseen_starting() -> None:
    sim = WorkflowRunSim(request([step("a", 1)]))
    sim.decide()
    sim.stop()
    sim.finished("a", RunStatus.STOPPED, signal=15)  # no run.started read: it did run, it was stopped
    sim.decide()
    assert sim.status() is WorkflowRunStatus.STOPPED


def test_a_run_event_that_is_not_an_ending_does_not_end_the_step() -> None:
    sim = WorkflowRunSim(request([step("a", 1)]))
    sim.decide()
    sim.started("a")
    sim.finished("a", RunStatus.RUNNING)
    assert sim.decide().events == () and sim.statuses() == {"a": "running"}


def test_a_step_failing_while_the_run_stops_is_not_retried() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retries=3, retry_backoff_s=0)]))
    sim.decide()
    sim.started("a")
    sim.stop()
    sim.decide()
    sim.failed("a", 143)  # its TERM handler exited 143
    decision = sim.decide()
    assert dispatched(decision.events) == []
    assert sim.status() is WorkflowRunStatus.STOPPED and sim.statuses() == {"a": "failed"}


def test_a_second_stop_and_a_stop_after_the_end_change_nothing() -> None:
    sim = WorkflowRunSim(request([step("a", 1)]))
    sim.decide()
    sim.started("a")
    sim.stop()
    sim.decide()
    sim.at(3).stop()
    assert sim.decide().events == ()
    sim.finished("a", RunStatus.STOPPED, signal=15)
    sim.decide()
    sim.stop()
    assert sim.decide().events == () and sim.status() is WorkflowRunStatus.STOPPED


# holds ---------------------------------------------------------------------------------------------


def test_a_held_step_defers_the_stop_until_it_is_released() -> None:
    sim = WorkflowRunSim(request([step("lib", 1, "parallel", hold_max_s=300), step("a", 2)]))
    sim.decide()
    sim.started("lib", "a")
    sim.hold("lib")
    sim.at(10).stop()
    decision = sim.decide()
    assert kinds(decision) == [("step_stop_issued", "a")]
    assert decision.next_wakeup == T0 + timedelta(seconds=310)
    assert spad_status(sim.state.steps["lib"]) == "waiting"
    sim.finished("a", RunStatus.STOPPED, signal=15)
    assert kinds(sim.at(20).decide()) == [("step_settled", "a")]  # lib still holds
    sim.at(42).release("lib")
    decision = sim.decide()
    assert kinds(decision) == [("step_stop_issued", "lib")]
    assert decision.next_wakeup is None
    sim.finished("lib", RunStatus.STOPPED, signal=15)
    sim.decide()
    assert sim.status() is WorkflowRunStatus.STOPPED


def test_a_hold_that_is_never_released_defers_the_stop_for_hold_max_s_only() -> None:
    sim = WorkflowRunSim(request([step("lib", 1, hold_max_s=60)]))
    sim.decide()
    sim.started("lib")
    sim.hold("lib")
    sim.at(5).stop()
    assert sim.decide().next_wakeup == T0 + timedelta(seconds=65)
    assert sim.at(64.9).decide().events == ()
    decision = sim.at(65).decide()
    assert kinds(decision) == [("step_stop_issued", "lib")]
    [stop] = decision.events
    assert isinstance(stop, WfRunStepStopIssued) and "hold not released in time" in stop.reason


def test_a_hold_also_defers_the_stop_that_follows_a_failure() -> None:
    sim = WorkflowRunSim(request([step("lib", 1, "parallel", hold_max_s=60), step("a", 2, retries=0)]))
    sim.decide()
    sim.started("lib", "a")
    sim.hold("lib")
    sim.at(1).failed("a")
    assert sim.decide().next_wakeup == T0 + timedelta(seconds=61)
    assert sim.statuses()["lib"] == "running"
    assert kinds(sim.at(61).decide()) == [("step_stop_issued", "lib")]


def test_a_hold_of_an_earlier_attempt_does_not_hold_the_current_one() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retry_backoff_s=0)]))
    sim.decide()
    sim.started("a")
    sim.failed("a")
    sim.decide()
    sim.started("a")
    sim.hold("a", attempt=1)  # the first attempt's process, too late
    sim.stop()
    assert kinds(sim.decide()) == [("step_stop_issued", "a")]


# determinism and crashes ---------------------------------------------------------------------------


def test_decide_is_deterministic_and_leaves_its_input_alone() -> None:
    sim = seed_wf1()
    before = copy.deepcopy(sim.state)
    first, second = decide(sim.state, T0), decide(sim.state, T0)
    assert first == second
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]
    assert sim.state == before
    assert [e.run_id for e in first.events if isinstance(e, WfRunStepDispatched)] == [
        step_run_id("wr-1", "t11", 1),
        step_run_id("wr-1", "t12", 1),
    ]
    # Another run of the same workflow names other step runs.
    other = decide(WorkflowRunSim(request(list(sim.state.steps[s].spec for s in ("t11", "t12")), "wr-2")).state, T0)
    assert {e.run_id for e in other.events if isinstance(e, WfRunStepDispatched)}.isdisjoint(
        {e.run_id for e in first.events if isinstance(e, WfRunStepDispatched)}
    )


def test_a_scheduler_that_died_midway_through_storing_a_decision_completes_it_with_the_same_ids() -> None:
    sim = seed_wf1()
    decision = decide(sim.state, T0)
    assert len(decision.events) == 2
    stored = [*sim.events, decision.events[0]]  # SIGKILL after the first append
    again = decide(fold(stored), T0 + timedelta(seconds=7))
    assert [(e.event_id, e.run_id) for e in again.events if isinstance(e, WfRunStepDispatched)] == [
        (decision.events[1].event_id, step_run_id("wr-1", "t12", 1))
    ]
    # And once everything is stored, deciding again from the rebuilt state starts nothing twice.
    assert decide(fold([*stored, *again.events]), T0 + timedelta(seconds=8)).events == ()


def test_a_restarted_scheduler_keeps_the_retry_time_that_was_decided() -> None:
    sim = WorkflowRunSim(request([step("a", 1, retry_backoff_s=30)]))
    sim.decide()
    sim.started("a")
    sim.failed("a")
    sim.decide()
    rebuilt = fold(sim.events)
    assert rebuilt.steps["a"].status is StepStatus.RETRYING
    late = decide(rebuilt, T0 + timedelta(seconds=12))
    assert late.events == () and late.next_wakeup == T0 + timedelta(seconds=30)


def test_every_step_attempt_is_dispatched_once_whatever_is_replayed() -> None:
    sim = WorkflowRunSim(request([step("bg", 1, "parallel", retry_backoff_s=0), step("a", 2), step("b", 3)]))
    sim.decide()
    sim.started("bg", "a")
    sim.failed("bg")
    sim.decide()
    sim.started("bg")
    sim.succeeded("a")
    sim.decide()
    for cut in range(1, len(sim.events) + 1):
        # A scheduler restarted after any prefix, given the whole stream since, decides nothing already done.
        state = fold(sim.events[:cut] + sim.events)
        assert dispatched(decide(state, sim.now).events) == []
    assert dispatched(sim.events) == [("bg", 1), ("a", 1), ("bg", 2), ("b", 1)]
