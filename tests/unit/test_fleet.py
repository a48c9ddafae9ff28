"""The scheduler's view of the fleet: who is silent, who came back as a new process."""

from scriptbus.events import ExecutorStopped
from scriptbus.scheduler.fleet import ExecutorState, Fleet
from tests.helpers.fleet import heartbeat


def test_silent_executor_is_lost_once_with_its_runs() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1", ["r1"]), now=0)
    assert fleet.silent(now=2.9) == []
    [loss] = fleet.silent(now=3.5)
    assert (loss.host, loss.executor_id, loss.run_ids) == ("a", "e1", ("r1",))
    assert fleet.silent(now=10) == []  # declared once
    assert fleet.executors["a"].state is ExecutorState.LOST


def test_cleanly_stopped_executor_is_never_lost() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1"), now=0)
    fleet.observe(ExecutorStopped(host="a", executor_id="e1"), now=1)
    assert fleet.silent(now=100) == []


def test_restart_under_the_same_host_loses_the_old_instance_runs() -> None:
    fleet = Fleet(lost_after_s=30)
    fleet.observe(heartbeat("a", "e1", ["r1", "r2"]), now=0)
    loss = fleet.observe(heartbeat("a", "e2"), now=1)
    assert loss is not None and loss.executor_id == "e1" and set(loss.run_ids) == {"r1", "r2"}
    assert fleet.observe(heartbeat("a", "e2"), now=2) is None


def test_lost_executor_that_beats_again_is_online() -> None:
    fleet = Fleet(lost_after_s=1)
    fleet.observe(heartbeat("a", "e1"), now=0)
    assert len(fleet.silent(now=2)) == 1
    fleet.observe(heartbeat("a", "e1"), now=3)
    assert fleet.executors["a"].state is ExecutorState.ONLINE


def test_silence_the_scheduler_could_not_hear_is_excused() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1", ["r1"]), now=0)
    fleet.excuse(now=10)  # our own connection was down until 10
    assert fleet.silent(now=12) == []
    [loss] = fleet.silent(now=13.5)  # silent for longer than the timeout since we could hear again
    assert loss.host == "a"
