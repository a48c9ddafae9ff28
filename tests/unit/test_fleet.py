"""The scheduler's view of the fleet: instances told apart by executor id, lost only when silent."""

from scriptbus.events import ExecutorLost, ExecutorState, ExecutorStopped, utcnow
from scriptbus.scheduler.fleet import FORGET_AFTER_S, Fleet
from tests.helpers.fleet import heartbeat


def test_silent_executor_is_lost_once_with_its_runs() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1", ["r1"]), now=0)
    assert fleet.silent(now=2.9) == []
    [loss] = fleet.silent(now=3.5)
    assert (loss.host, loss.executor_id, loss.run_ids) == ("a", "e1", ("r1",))
    assert fleet.silent(now=10) == []  # declared once
    assert fleet.executors["e1"].state is ExecutorState.LOST


def test_cleanly_stopped_executor_is_never_lost() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1"), now=0)
    fleet.observe(ExecutorStopped(host="a", executor_id="e1"), now=1)
    assert fleet.silent(now=100) == []


def test_two_live_instances_of_one_host_are_two_executors() -> None:
    fleet = Fleet(lost_after_s=3)
    # They beat in turn, as two live processes with the same --host would.
    for t in range(20):
        fleet.observe(heartbeat("a", "e1", ["r1"]), now=t)
        fleet.observe(heartbeat("a", "e2", ["r2"]), now=t + 0.5)
        assert fleet.silent(now=t + 0.6) == []
    assert {(ex.host, ex.state) for ex in fleet.executors.values()} == {("a", ExecutorState.ONLINE)}
    assert set(fleet.executors) == {"e1", "e2"}


def test_only_the_instance_that_died_loses_its_runs() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1", ["r1"]), now=0)
    fleet.observe(heartbeat("a", "e2", ["r2"]), now=0)
    for t in (1, 2, 3, 4):
        fleet.observe(heartbeat("a", "e2", ["r2"]), now=t)  # e1 said nothing more
    [loss] = fleet.silent(now=4)
    assert (loss.executor_id, loss.run_ids) == ("e1", ("r1",))
    assert fleet.executors["e2"].state is ExecutorState.ONLINE


def test_a_restart_does_not_lose_the_new_instance() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1", ["r1"]), now=0)
    fleet.observe(heartbeat("a", "e2"), now=1)
    # The old instance is lost by its own silence, the new one is not touched.
    assert fleet.silent(now=2) == []
    fleet.observe(heartbeat("a", "e2"), now=3.5)
    [loss] = fleet.silent(now=3.5)
    assert loss.executor_id == "e1"


def test_draining_executor_that_goes_silent_is_lost() -> None:
    fleet = Fleet(lost_after_s=3)
    beat = heartbeat("a", "e1", ["r1"]).model_copy(update={"draining": True})
    fleet.observe(beat, now=0)
    assert fleet.executors["e1"].state is ExecutorState.DRAINING
    assert [loss.executor_id for loss in fleet.silent(now=5)] == ["e1"]


def test_lost_executor_that_beats_again_is_online() -> None:
    fleet = Fleet(lost_after_s=1)
    fleet.observe(heartbeat("a", "e1"), now=0)
    assert len(fleet.silent(now=2)) == 1
    fleet.observe(heartbeat("a", "e1"), now=3)
    assert fleet.executors["e1"].state is ExecutorState.ONLINE


def test_gone_instances_are_forgotten_in_time() -> None:
    fleet = Fleet(lost_after_s=1)
    fleet.observe(ExecutorLost(host="a", executor_id="e1", last_seen=utcnow()), now=0)
    fleet.observe(heartbeat("a", "e2"), now=0)
    fleet.observe(ExecutorStopped(host="a", executor_id="e2"), now=0)
    fleet.silent(now=FORGET_AFTER_S + 1)
    assert fleet.executors == {}


def test_silence_the_scheduler_could_not_hear_is_excused() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("a", "e1", ["r1"]), now=0)
    fleet.excuse(now=10)  # our own connection was down until 10
    assert fleet.silent(now=12) == []
    [loss] = fleet.silent(now=13.5)  # silent for longer than the timeout since we could hear again
    assert loss.host == "a"


def test_a_fan_out_matches_online_executors_by_pool_labels_and_names_in_host_order() -> None:
    fleet = Fleet(lost_after_s=3)
    fleet.observe(heartbeat("b", "e2").model_copy(update={"labels": {"role": "web"}}), now=0)
    fleet.observe(heartbeat("a", "e1").model_copy(update={"labels": {"role": "web"}}), now=0)
    fleet.observe(heartbeat("c", "e3").model_copy(update={"labels": {"role": "db"}}), now=0)
    fleet.observe(heartbeat("d", "e4"), now=0)
    fleet.observe(ExecutorStopped(host="d", executor_id="e4"), now=1)
    assert fleet.matching(None, {}, []) == (["a", "b", "c"], [])
    assert fleet.matching(None, {"role": "web"}, []) == (["a", "b"], [])
    assert fleet.matching("c", {}, []) == (["c"], [])  # each serves a pool of its host's name
    assert fleet.matching(None, {}, ["c", "d"]) == (["c"], ["d"])
