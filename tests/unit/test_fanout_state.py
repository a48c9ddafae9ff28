"""The fan-out's decisions as pure functions of its events: rolling starts, max_failures, stop, retry."""

from __future__ import annotations

from scriptbus.events import RunFinished, RunStatus
from scriptbus.events.envelope import Event
from scriptbus.events.fanouts import (
    FanoutFinished,
    FanoutHostDispatched,
    FanoutHostSkipped,
    FanoutRequested,
    FanoutRetryRequested,
    FanoutStatus,
    FanoutStopRequested,
    fanout_run_id,
)
from scriptbus.scheduler.fanouts.state import FanoutState

FID = "6c1d3c55-3f0e-4a57-9d0a-1b2c3d4e5f60"


def state(max_parallel: int | None = None, max_failures: int | None = None) -> FanoutState:
    request = FanoutRequested(
        fanout_id=FID, script="true", hosts=["a", "b", "c"], max_parallel=max_parallel, max_failures=max_failures
    )
    return FanoutState.requested(request)


def decide(s: FanoutState) -> list[Event]:
    """Decide and apply, as the driver does once each decision is stored."""
    events = s.decide()
    for event in events:
        s.apply(event)
    return events


def dispatched(events: list[Event]) -> list[str]:
    return [e.host for e in events if isinstance(e, FanoutHostDispatched)]


def end(s: FanoutState, host: str, status: RunStatus) -> None:
    s.apply(RunFinished(run_id=s.hosts[host].run_id or "", status=status))


def test_max_parallel_1_starts_the_next_host_only_after_the_previous_finished() -> None:
    s = state(max_parallel=1)
    assert dispatched(decide(s)) == ["a"]
    assert decide(s) == []
    end(s, "a", RunStatus.SUCCEEDED)
    assert dispatched(decide(s)) == ["b"]
    end(s, "b", RunStatus.FAILED)
    assert dispatched(decide(s)) == ["c"]
    end(s, "c", RunStatus.SUCCEEDED)
    (finished,) = decide(s)
    assert isinstance(finished, FanoutFinished) and finished.status is FanoutStatus.FAILED


def test_decisions_have_derived_ids_so_two_schedulers_take_the_same_one() -> None:
    one, two = state(max_parallel=2), state(max_parallel=2)
    assert [e.event_id for e in one.decide()] == [e.event_id for e in two.decide()]
    (first, _second) = decide(one)
    assert isinstance(first, FanoutHostDispatched) and first.run_id == fanout_run_id(FID, "a", 1)


def test_max_failures_skips_the_hosts_not_started() -> None:
    s = state(max_parallel=1, max_failures=1)
    decide(s)
    end(s, "a", RunStatus.TIMED_OUT)
    skipped = decide(s)
    assert [(type(e), getattr(e, "host", None)) for e in skipped] == [
        (FanoutHostSkipped, "b"),
        (FanoutHostSkipped, "c"),
    ]
    (finished,) = decide(s)
    assert isinstance(finished, FanoutFinished) and finished.status is FanoutStatus.FAILED


def test_stop_skips_the_waiting_hosts_and_ends_stopped_once_the_running_ones_ended() -> None:
    s = state(max_parallel=1)
    decide(s)
    s.apply(FanoutStopRequested(fanout_id=FID))
    assert [getattr(e, "host", None) for e in decide(s)] == ["b", "c"]
    assert decide(s) == []  # a is still running: its stop is the driver's to send
    end(s, "a", RunStatus.STOPPED)
    (finished,) = decide(s)
    assert isinstance(finished, FanoutFinished) and finished.status is FanoutStatus.STOPPED


def test_retry_reruns_only_the_named_hosts_that_did_not_succeed_as_a_new_attempt() -> None:
    s = state()
    decide(s)
    end(s, "a", RunStatus.SUCCEEDED)
    end(s, "b", RunStatus.FAILED)
    end(s, "c", RunStatus.SUCCEEDED)
    decide(s)
    assert s.finished
    s.apply(FanoutRetryRequested(fanout_id=FID, hosts=["a", "b"]))
    again = decide(s)
    assert [(e.host, e.attempt) for e in again if isinstance(e, FanoutHostDispatched)] == [("b", 2)]
    end(s, "b", RunStatus.SUCCEEDED)
    (finished,) = decide(s)
    assert isinstance(finished, FanoutFinished) and (finished.status, finished.round) == (FanoutStatus.SUCCEEDED, 2)


def test_a_host_whose_run_was_deleted_is_neither_retried_nor_held_against_the_next_round() -> None:
    # What a restarted scheduler folds: a's `run.finished` left the stream with its deleted run.
    s = state()
    for host in "abc":
        s.apply(FanoutHostDispatched(fanout_id=FID, host=host, attempt=1, run_id=fanout_run_id(FID, host, 1)))
    end(s, "b", RunStatus.FAILED)
    end(s, "c", RunStatus.SUCCEEDED)
    s.apply(FanoutFinished(fanout_id=FID, status=FanoutStatus.FAILED))
    s.apply(FanoutRetryRequested(fanout_id=FID, hosts=["a", "b"]))
    assert [(e.host, e.attempt) for e in decide(s) if isinstance(e, FanoutHostDispatched)] == [("b", 2)]
    end(s, "b", RunStatus.SUCCEEDED)
    (finished,) = decide(s)
    assert isinstance(finished, FanoutFinished) and finished.status is FanoutStatus.SUCCEEDED
