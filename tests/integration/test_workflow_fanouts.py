"""Workflow steps with `fan_out`, every service a real process and three executors on different host
names: a rolling step before an ordinary one, a failing host failing the step (and the run once retries
are spent), no host matching, a stop, and the scheduler SIGKILLed mid-step. Starts are counted from the
events stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from scriptbus.events import step_run_id
from scriptbus.events.fanouts import fanout_run_id
from scriptbus.events.workflows import step_fanout_id
from tests.helpers.fanouts import EXECUTORS, HOSTS, by_host, fleet_online, get_fanout
from tests.helpers.processes import StartService
from tests.helpers.servers import Bus
from tests.helpers.stack import Stack, running_stack
from tests.helpers.waiting import eventually
from tests.helpers.wfapi import get_wfrun, put_workflow, start_wfrun, steps_of, wait_wfrun_ended
from tests.helpers.wfstream import starts

# Only the first run of all succeeds (each run counts the marks left before it).
FIRST_ONLY = 'n=$(ls "$MARKS" | wc -l); touch "$MARKS/$(date +%s%N)"; [ "$n" = 0 ]'


@pytest.fixture
async def fleet(bus: Bus, start_service: StartService) -> AsyncIterator[Stack]:
    _nc, js, s = bus
    async with running_stack(start_service, EXECUTORS) as stack:
        await fleet_online(stack.client)
        yield stack
    for bucket in (s.command_names_bucket, s.wfactive_bucket, s.wfdefs_bucket, s.idempotency_bucket):
        try:
            await js.delete_key_value(bucket)
        except Exception:
            pass


def rolling(fan_out: dict[str, Any], script: str = "sleep 0.3", **fields: Any) -> list[dict[str, Any]]:
    """A fan-out step `roll`, then an ordinary step `after` that waits for it."""
    return [
        {"name": "roll", "place": 1, "script": script, "fan_out": fan_out, **fields},
        {"name": "after", "place": 2, "script": "echo done"},
    ]


async def test_a_rolling_step_runs_one_host_at_a_time_and_the_next_step_after_all_succeeded(
    bus: Bus, fleet: Stack
) -> None:
    _nc, js, s = bus
    client = fleet.client
    await put_workflow(client, "fleet", "deploy", rolling({"max_parallel": 1}))
    wfrun = await start_wfrun(client, "fleet", "deploy")
    end = await wait_wfrun_ended(client, wfrun["id"])
    assert end["status"] == "succeeded", end
    roll, after = steps_of(end)["roll"], steps_of(end)["after"]
    fanout_id = step_fanout_id(wfrun["id"], "roll", 1)
    assert (roll["status"], roll["fanout_id"], roll["fanout_url"]) == (
        "succeeded",
        fanout_id,
        f"/api/v1/fanouts/{fanout_id}",
    )
    assert [(h["host"], h["status"]) for h in roll["fanout_hosts"]] == [(h, "succeeded") for h in HOSTS]
    assert after["fanout_id"] is None and after["status"] == "succeeded"

    fanout = await get_fanout(client, fanout_id)
    assert fanout["status"] == "succeeded" and fanout["hosts"] == list(HOSTS)
    runs = [(await client.get(f"/api/v1/runs/{r['run_id']}")).json() for r in fanout["runs"]]
    # One host at a time, and `after` only once every host had finished.
    for before, then in zip(runs, runs[1:], strict=False):
        assert before["finished_at"] <= then["started_at"], (before, then)
    after_run = (await client.get(f"/api/v1/runs/{after['run_id']}")).json()
    assert max(r["finished_at"] for r in runs) <= after_run["started_at"]
    expected = {fanout_run_id(fanout_id, h, 1) for h in HOSTS} | {step_run_id(wfrun["id"], "after", 1)}
    assert await starts(js, s) == dict.fromkeys(expected, 1)


async def test_a_failing_host_fails_the_attempt_each_retry_is_a_new_fanout_and_no_match_fails_clearly(
    bus: Bus, fleet: Stack, exchange_dir: Path
) -> None:
    _nc, js, s = bus
    client = fleet.client
    web = {"labels": {"role": "web"}, "max_parallel": 1}
    tasks = rolling(web, FIRST_ONLY, env={"MARKS": str(exchange_dir)}, retries=1, retry_backoff_s=0)
    await put_workflow(client, "fleet", "flaky", tasks)
    wfrun = await start_wfrun(client, "fleet", "flaky")
    end = await wait_wfrun_ended(client, wfrun["id"])
    assert (end["status"], end["failed_step"]) == ("failed", "roll"), end
    roll = steps_of(end)["roll"]
    assert roll["status"] == "failed" and roll["attempt"] == 2
    assert "fan-out" in roll["reason"] and "failed" in roll["reason"]
    first, second = (step_fanout_id(wfrun["id"], "roll", n) for n in (1, 2))
    assert [a["fanout_id"] for a in roll["attempts"]] == [first, second]
    statuses = {h: r["status"] for h, r in by_host(await get_fanout(client, first)).items()}
    assert statuses == {"fo-a": "succeeded", "fo-b": "failed"}
    assert steps_of(end)["after"]["status"] == "skipped"
    expected = {fanout_run_id(f, h, 1) for f in (first, second) for h in ("fo-a", "fo-b")}
    assert await starts(js, s) == dict.fromkeys(expected, 1)

    await put_workflow(client, "fleet", "nowhere", rolling({"labels": {"role": "cache"}}, retries=0))
    lonely = await wait_wfrun_ended(client, (await start_wfrun(client, "fleet", "nowhere"))["id"])
    assert lonely["status"] == "failed"
    roll = steps_of(lonely)["roll"]
    assert roll["status"] == "failed" and "no live executor matches" in roll["reason"]
    assert "role=cache" in roll["reason"], roll["reason"]

    both = rolling({"hosts": ["fo-a"]}, host="fo-a")
    refused = await client.put("/api/v1/projects/fleet/workflows/bad", json={"tasks": both})
    assert refused.status_code == 422 and "fan_out" in refused.text and "host" in refused.text


async def test_stopping_the_workflow_run_stops_the_fanouts_runs(fleet: Stack) -> None:
    client = fleet.client
    await put_workflow(client, "fleet", "long", rolling({"max_parallel": 2}, "sleep 600", stop_grace_s=1))
    wfrun = await start_wfrun(client, "fleet", "long")

    async def two_running() -> bool:
        hosts = steps_of(await get_wfrun(client, wfrun["id"]))["roll"]["fanout_hosts"] or []
        return [h["status"] for h in hosts] == ["running", "running", "pending"]

    await eventually(two_running, 60, interval=0.2, what="two hosts running")
    # The step is running while its fan-out is (no run of the attempt's own id says so).
    roll = steps_of(await get_wfrun(client, wfrun["id"]))["roll"]
    assert (roll["status"], roll["attempts"][-1]["status"]) == ("running", "running"), roll
    stopped = await client.post(f"/api/v1/workflow-runs/{wfrun['id']}/stop")
    assert stopped.status_code == 202, stopped.text
    end = await wait_wfrun_ended(client, wfrun["id"])
    assert end["status"] == "stopped", end
    fanout = await get_fanout(client, step_fanout_id(wfrun["id"], "roll", 1))
    assert fanout["status"] == "stopped"
    assert {h: r["status"] for h, r in by_host(fanout).items()} == {
        "fo-a": "stopped",
        "fo-b": "stopped",
        "fo-c": "skipped",
    }
    assert steps_of(end)["after"]["status"] == "cancelled"


async def test_a_scheduler_sigkilled_mid_step_starts_no_host_twice(
    bus: Bus, fleet: Stack, start_service: StartService
) -> None:
    _nc, js, s = bus
    client = fleet.client
    wfruns = []
    scheduler = fleet.services["scheduler"]
    for i in range(3):
        await put_workflow(client, "fleet", f"roll{i}", rolling({"max_parallel": 1}, "sleep 1"))
        wfruns.append(await start_wfrun(client, "fleet", f"roll{i}"))
        await asyncio.sleep(0.7)
        scheduler.kill()
        scheduler = start_service("scheduler")
    expected = set()
    for wfrun in wfruns:
        end = await wait_wfrun_ended(client, wfrun["id"], timeout=120)
        assert end["status"] == "succeeded", end
        fanout_id = step_fanout_id(wfrun["id"], "roll", 1)
        expected |= {fanout_run_id(fanout_id, h, 1) for h in HOSTS} | {step_run_id(wfrun["id"], "after", 1)}
    assert await starts(js, s) == dict.fromkeys(expected, 1)
