"""The scheduler drives workflow runs: real NATS, real scheduler and executor processes, workflow runs
requested as the gateway will request them, and everything checked from the events stream."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scriptbus.events import CommandCreated, RunFinished, RunRequested, RunStarted, RunStatus, new_id, publish_event
from scriptbus.events.active_runs import active_run, claim_active_run
from scriptbus.events.streams import command_names_bucket, wfactive_bucket
from scriptbus.events.workflows import (
    StepSpec,
    WfRunFinished,
    WfRunRequested,
    WfRunStepDispatched,
    WfRunStepHeld,
    WfRunStepReleased,
    WfRunStepSettled,
    WfRunStepSkipped,
    WfRunStopRequested,
    WorkflowRunStatus,
    step_run_id,
)
from scriptbus.scheduler.workflows.decide import decide
from scriptbus.scheduler.workflows.driver import StaleDecision, append_decision
from scriptbus.scheduler.workflows.state import fold
from tests.helpers.processes import ServiceProcess, StartService
from tests.helpers.seed004 import SEED_004_SAMPLE
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually
from tests.helpers.wfstream import finished, of, request_wfrun, starts, stored, wfrun_events


@pytest.fixture
async def wf_bus(bus: Bus) -> AsyncIterator[Bus]:
    yield bus
    _nc, js, s = bus
    for bucket in (s.command_names_bucket, s.wfactive_bucket, s.idempotency_bucket):
        try:
            await js.delete_key_value(bucket)
        except Exception:
            pass


async def start(start_service: StartService, name: str, ready: str, *args: str) -> ServiceProcess:
    proc = start_service(name, *args)
    await asyncio.to_thread(proc.wait_for_log, ready, 60)
    return proc


async def scheduler(start_service: StartService) -> ServiceProcess:
    return await start(start_service, "scheduler", r"scheduler ready")


async def executor(start_service: StartService, *args: str) -> ServiceProcess:
    return await start(start_service, "executor", r"executor ready", *args)


def step(name: str, place: int, exec: str = "await", **fields: Any) -> StepSpec:
    return StepSpec.model_validate({"name": name, "place": place, "exec": exec, **fields})


async def wait_finished(bus: Bus, wfrun_id: str, timeout: float = 60) -> WfRunFinished:
    _nc, js, s = bus

    async def probe() -> WfRunFinished | None:
        return await finished(js, s, wfrun_id)

    end = await eventually(probe, timeout, interval=0.2, what=f"workflow run {wfrun_id} finished")
    assert end is not None
    return end


async def wait_run_event(bus: Bus, run_id: str, cls: type[Any], timeout: float = 60) -> Any:
    _nc, js, s = bus

    async def probe() -> Any:
        found = of(await stored(js, s, s.run_all(run_id)), cls)
        return found[0] if found else None

    return await eventually(probe, timeout, interval=0.1, what=f"{cls.__name__} of run {run_id}")


async def test_seed_wf1_runs_its_parallel_and_await_steps_at_once_and_succeeds(
    wf_bus: Bus, start_service: StartService, exchange_dir: Path
) -> None:
    _nc, js, s = wf_bus
    # Seed 004's `simple` as a saved command that only ends once both steps run: they meet in `rdv`.
    rdv = exchange_dir
    simple = CommandCreated(
        command_id=new_id(),
        name="simple",
        script='touch "$RDV/$1"; while [ "$(ls "$RDV" | wc -l)" -lt 2 ]; do sleep 0.05; done; echo "simple $1"',
        env={"RDV": str(rdv)},
    )
    await publish_event(js, s, simple)
    await (await command_names_bucket(js, s)).create("simple", simple.command_id.encode())
    wf1 = json.loads(SEED_004_SAMPLE)["context"]["project"]["workflows"][0]
    steps = [StepSpec.model_validate(task) for task in wf1["tasks"]]
    await executor(start_service)
    await scheduler(start_service)

    active = await wfactive_bucket(js, s)
    request = await request_wfrun(js, s, steps, "pr1", wf1["name"])
    assert await claim_active_run(active, request.workflow_id, request.wfrun_id) == []

    end = await wait_finished(wf_bus, request.wfrun_id)
    assert end.status is WorkflowRunStatus.SUCCEEDED
    runs = {name: step_run_id(request.wfrun_id, name, 1) for name in ("t11", "t12")}
    counts = await starts(js, s)
    assert [counts[r] for r in runs.values()] == [1, 1]
    for name, run_id in runs.items():
        (req,) = of(await stored(js, s, s.run_requested(run_id, "*")), RunRequested)
        assert (req.command_id, req.workflow_run_id, req.workflow_step, req.attempt) == (
            simple.command_id,
            request.wfrun_id,
            name,
            1,
        )
        done = await wait_run_event(wf_bus, run_id, RunFinished)
        assert done.status is RunStatus.SUCCEEDED
    assert sorted(os.listdir(rdv)) == ["0", "5"]

    # The workflow may run again: the finished run gave up its active-run key.
    async def released() -> bool:
        return await active_run(active, request.workflow_id) is None

    await eventually(released, 10, what="the active-run key released")


async def test_a_failing_step_is_restarted_once_then_the_run_fails_and_later_steps_are_skipped(
    wf_bus: Bus, start_service: StartService
) -> None:
    _nc, js, s = wf_bus
    await executor(start_service)
    await scheduler(start_service)
    steps = [step("a", 1, script="echo try; exit 3", retry_backoff_s=0.2), step("b", 2, function="true")]
    request = await request_wfrun(js, s, steps)

    end = await wait_finished(wf_bus, request.wfrun_id)
    assert end.status is WorkflowRunStatus.FAILED
    events = await wfrun_events(js, s, request.wfrun_id)
    assert [(d.step, d.attempt) for d in of(events, WfRunStepDispatched)] == [("a", 1), ("a", 2)]
    assert [(e.attempt, e.status, e.exit_code, e.will_retry) for e in of(events, WfRunStepSettled)] == [
        (1, RunStatus.FAILED, 3, True),
        (2, RunStatus.FAILED, 3, False),
    ]
    assert [e.step for e in of(events, WfRunStepSkipped)] == ["b"]
    counts = await starts(js, s)
    assert [counts[step_run_id(request.wfrun_id, "a", n)] for n in (1, 2, 3)] == [1, 1, 0]


async def test_stopping_a_step_that_ignores_sigterm_ends_killed_within_its_grace_and_leaves_no_process(
    wf_bus: Bus, start_service: StartService
) -> None:
    _nc, js, s = wf_bus
    await executor(start_service)
    await scheduler(start_service)
    steps = [step("deaf", 1, script="trap '' TERM; while :; do sleep 0.2; done", stop_grace_s=1)]
    request = await request_wfrun(js, s, steps)
    run_id = step_run_id(request.wfrun_id, "deaf", 1)
    started: RunStarted = await wait_run_event(wf_bus, run_id, RunStarted)

    asked = time.monotonic()
    await publish_event(js, s, WfRunStopRequested(wfrun_id=request.wfrun_id))
    end = await wait_finished(wf_bus, request.wfrun_id)
    assert end.status is WorkflowRunStatus.KILLED
    assert time.monotonic() - asked < 1 + 20  # the grace plus a generous margin for a loaded machine
    done: RunFinished = await wait_run_event(wf_bus, run_id, RunFinished)
    assert (done.status, done.survivors) == (RunStatus.KILLED, [])
    with pytest.raises(ProcessLookupError):
        os.kill(started.pid, 0)


async def test_a_stop_while_the_scheduler_is_down_still_stops_the_steps(
    wf_bus: Bus, start_service: StartService
) -> None:
    _nc, js, s = wf_bus
    await executor(start_service, "--max-concurrency", "1")  # so the second step waits in its queue
    sched = await scheduler(start_service)
    steps = [step("bg", 1, "parallel", script="sleep 1000"), step("fg", 2, script="sleep 1000")]
    request = await request_wfrun(js, s, steps)
    running, queued = (step_run_id(request.wfrun_id, name, 1) for name in ("bg", "fg"))
    await wait_run_event(wf_bus, running, RunStarted)
    await wait_run_event(wf_bus, queued, RunRequested)

    sched.kill()
    await publish_event(js, s, WfRunStopRequested(wfrun_id=request.wfrun_id))
    done: RunFinished = await wait_run_event(wf_bus, running, RunFinished)
    assert done.status is RunStatus.STOPPED
    # The executor, free again, takes the queued step and cancels it instead of starting it.
    never: RunFinished = await wait_run_event(wf_bus, queued, RunFinished)
    assert never.status is RunStatus.CANCELLED
    assert (await starts(js, s))[queued] == 0
    assert await finished(js, s, request.wfrun_id) is None  # nobody decided anything: the executor did it

    await scheduler(start_service)
    end = await wait_finished(wf_bus, request.wfrun_id)
    assert end.status is WorkflowRunStatus.STOPPED


async def test_a_hold_file_defers_the_stop_until_the_script_removes_it(
    wf_bus: Bus, start_service: StartService, work_dir: Path
) -> None:
    _nc, js, s = wf_bus
    await executor(start_service)
    await scheduler(start_service)
    # Exit 3 on a TERM that came while the hold file still existed, 0 on one that waited for its removal.
    # The trap first: the hold file says "ready to be stopped once I remove it".
    script = (
        'trap \'[ -e "$SCRIPTBUS_HOLD_FILE" ] && exit 3; exit 0\' TERM; touch "$SCRIPTBUS_HOLD_FILE"; '
        "while :; do sleep 0.05; done"
    )
    request = await request_wfrun(js, s, [step("lib", 1, script=script)])
    run_id = step_run_id(request.wfrun_id, "lib", 1)
    hold = work_dir / run_id / ".hold"
    await eventually(hold.exists, what="hold file made by the script")

    await publish_event(js, s, WfRunStopRequested(wfrun_id=request.wfrun_id))

    async def held() -> list[WfRunStepHeld]:
        return of(await wfrun_events(js, s, request.wfrun_id), WfRunStepHeld)

    (hold_event,) = await eventually(held, what="the step reported held")
    assert hold_event.attempt == 1
    assert not of(await stored(js, s, s.run_event(run_id, "*")), RunFinished)  # still running, held
    hold.unlink()

    end = await wait_finished(wf_bus, request.wfrun_id)
    assert end.status is WorkflowRunStatus.STOPPED
    done: RunFinished = await wait_run_event(wf_bus, run_id, RunFinished)
    assert (done.status, done.exit_code) == (RunStatus.STOPPED, 0)
    events = await wfrun_events(js, s, request.wfrun_id)
    held_seq = next(seq for seq, e in events if isinstance(e, WfRunStepHeld))
    released_seq = next(seq for seq, e in events if isinstance(e, WfRunStepReleased))
    (finished_seq,) = [seq for seq, e in await stored(js, s, s.run_event(run_id, "finished"))]
    assert held_seq < released_seq < finished_seq


async def test_scheduler_sigkilled_at_random_moments_starts_every_step_attempt_exactly_once(
    wf_bus: Bus, start_service: StartService, exchange_dir: Path
) -> None:
    _nc, js, s = wf_bus
    marks = exchange_dir
    await executor(start_service)
    sched = await scheduler(start_service)
    # Each run: a background step, a step that fails its first attempt (then retried after a backoff),
    # and one after it.
    flaky = 'f="$MARKS/$1"; [ -e "$f" ] && exit 0; touch "$f"; exit 1'
    requests = []
    for i in range(10):
        steps = [
            step("bg", 1, "parallel", script="sleep 4"),
            step("flaky", 2, script=flaky, params=[str(i)], env={"MARKS": str(marks)}, retry_backoff_s=2),
            step("last", 3, script="sleep 2"),
        ]
        requests.append(await request_wfrun(js, s, steps, workflow=f"wf{i}"))

    async def all_finished() -> bool:
        return all([await finished(js, s, r.wfrun_id) is not None for r in requests])

    rng = random.Random()
    kills = 0
    while kills < 10 and not await all_finished():
        # A random moment of the scheduler's life: starting up, folding, deciding, acting; not a wait for a condition.
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        sched.kill()
        kills += 1
        sched = start_service("scheduler")
    for request in requests:
        end = await wait_finished(wf_bus, request.wfrun_id, timeout=120)
        assert end.status is WorkflowRunStatus.SUCCEEDED, (request.wfrun_id, end)

    expected = {
        step_run_id(r.wfrun_id, name, attempt)
        for r in requests
        for name, attempt in (("bg", 1), ("flaky", 1), ("flaky", 2), ("last", 1))
    }
    counts = await starts(js, s)
    assert {run_id: counts[run_id] for run_id in expected} == dict.fromkeys(expected, 1)
    assert set(counts) == expected


async def test_a_dispatch_stored_just_before_a_crash_gets_its_run_once_the_scheduler_is_back(
    wf_bus: Bus, start_service: StartService
) -> None:
    _nc, js, s = wf_bus
    await executor(start_service)
    request = await request_wfrun(js, s, [step("only", 1, function="true")])
    # What a scheduler SIGKILLed between storing its decision and requesting the step's run leaves behind.
    decision = decide(fold([request]), datetime.now(UTC))
    assert [type(e) for e in decision.events] == [WfRunStepDispatched]
    for event in decision.events:
        await publish_event(js, s, event)
    run_id = step_run_id(request.wfrun_id, "only", 1)
    assert not await stored(js, s, s.run_requested(run_id, "*"))

    await scheduler(start_service)
    end = await wait_finished(wf_bus, request.wfrun_id)
    assert end.status is WorkflowRunStatus.SUCCEEDED
    assert (await starts(js, s))[run_id] == 1
    assert len(of(await wfrun_events(js, s, request.wfrun_id), WfRunStepDispatched)) == 1


async def test_a_decision_that_did_not_see_the_runs_latest_event_is_not_stored(wf_bus: Bus) -> None:
    _nc, js, s = wf_bus
    request = await request_wfrun(js, s, [step("only", 1, function="true")])
    ((requested_seq, _),) = await wfrun_events(js, s, request.wfrun_id)
    stop_seq = (await publish_event(js, s, WfRunStopRequested(wfrun_id=request.wfrun_id))).seq
    # Decided on the run as it was before the stop: a dispatch.
    (dispatch,) = decide(fold([request]), datetime.now(UTC)).events

    with pytest.raises(StaleDecision):
        await append_decision(js, s, dispatch, requested_seq)
    assert [type(e) for _, e in await wfrun_events(js, s, request.wfrun_id)] == [WfRunRequested, WfRunStopRequested]
    assert await append_decision(js, s, dispatch, stop_seq) > stop_seq
