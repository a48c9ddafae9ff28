"""Workflows through the REST API with every service a real process (gateway, recorder, scheduler,
executor): many runs at once, the scheduler SIGKILLed at random moments, and a step's run that cannot be
deleted while its workflow run is active. Starts are counted from the events stream."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scriptbus.events import step_run_id
from scriptbus.events.active_runs import active_runs
from scriptbus.events.workflows import workflow_id
from tests.helpers.processes import StartService
from tests.helpers.servers import Bus
from tests.helpers.stack import Stack, running_stack
from tests.helpers.waiting import eventually
from tests.helpers.wfapi import get_wfrun, put_workflow, start_wfrun, steps_of, wait_wfrun_ended
from tests.helpers.wfstream import starts


@pytest.fixture
async def wf_stack(bus: Bus, start_service: StartService) -> AsyncIterator[Stack]:
    _nc, js, s = bus
    async with running_stack(start_service, [("--host", "local", "--max-concurrency", "256")]) as stack:
        yield stack
    for bucket in (s.command_names_bucket, s.wfactive_bucket, s.wfdefs_bucket, s.idempotency_bucket):
        try:
            await js.delete_key_value(bucket)
        except Exception:
            pass


async def count(client: httpx.AsyncClient, project: str, status: str) -> int:
    response = await client.get("/api/v1/workflow-runs", params={"project": project, "status": status, "limit": 1})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


async def test_100_workflow_runs_started_at_once_all_succeed_each_step_started_once(bus: Bus, wf_stack: Stack) -> None:
    _nc, js, s = bus
    client = wf_stack.client
    steps = [{"name": f"s{i}", "place": i, "exec": "await", "script": "true"} for i in (1, 2)]
    for i in range(100):
        await put_workflow(client, "load", f"wf{i}", steps)

    started = await asyncio.gather(*(start_wfrun(client, "load", f"wf{i}") for i in range(100)))
    wfrun_ids = [run["id"] for run in started]
    assert len(set(wfrun_ids)) == 100

    async def all_ended() -> bool:
        return await count(client, "load", "succeeded") + await count(client, "load", "failed") == 100

    await eventually(all_ended, 240, interval=0.5, what="100 workflow runs ended")
    assert await count(client, "load", "succeeded") == 100
    expected = {step_run_id(wfrun_id, name, 1) for wfrun_id in wfrun_ids for name in ("s1", "s2")}
    assert await starts(js, s) == dict.fromkeys(expected, 1)


async def test_20_workflow_runs_with_the_scheduler_sigkilled_at_random_moments_start_every_attempt_once(
    bus: Bus, wf_stack: Stack, start_service: StartService, exchange_dir: Path
) -> None:
    _nc, js, s = bus
    client = wf_stack.client
    marks = exchange_dir
    # A background step, a step that fails its first attempt (retried after a backoff), and one after it.
    flaky = 'f="$MARKS/$1"; [ -e "$f" ] && exit 0; touch "$f"; exit 1'
    for i in range(20):
        tasks: list[dict[str, Any]] = [
            {"name": "bg", "place": 1, "exec": "parallel", "script": "sleep 4"},
            {
                "name": "flaky",
                "place": 2,
                "exec": "await",
                "script": flaky,
                "params": [str(i)],
                "env": {"MARKS": str(marks)},
                "retry_backoff_s": 2,
            },
            {"name": "last", "place": 3, "exec": "await", "script": "sleep 2"},
        ]
        await put_workflow(client, "chaos", f"wf{i}", tasks)
    started = await asyncio.gather(*(start_wfrun(client, "chaos", f"wf{i}") for i in range(20)))
    wfrun_ids = [run["id"] for run in started]

    async def all_ended() -> bool:
        return all([(await get_wfrun(client, w))["finished_at"] is not None for w in wfrun_ids])

    rng = random.Random()
    scheduler = wf_stack.services["scheduler"]
    kills = 0
    while kills < 10 and not await all_ended():
        # A random moment of the scheduler's life: starting up, folding, deciding, acting.
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        scheduler.kill()
        kills += 1
        scheduler = start_service("scheduler")
    for wfrun_id in wfrun_ids:
        end = await wait_wfrun_ended(client, wfrun_id, timeout=180)
        assert end["status"] == "succeeded", end
        assert {name: step["attempt"] for name, step in steps_of(end).items()} == {"bg": 1, "flaky": 2, "last": 1}

    expected = {
        step_run_id(wfrun_id, name, attempt)
        for wfrun_id in wfrun_ids
        for name, attempt in (("bg", 1), ("flaky", 1), ("flaky", 2), ("last", 1))
    }
    assert await starts(js, s) == dict.fromkeys(expected, 1)


async def test_a_step_run_of_an_active_workflow_run_cannot_be_deleted(wf_stack: Stack) -> None:
    client = wf_stack.client
    tasks = [
        {"name": "first", "place": 1, "exec": "await", "script": "true"},
        {"name": "long", "place": 2, "exec": "await", "script": "sleep 600", "stop_grace_s": 1},
    ]
    await put_workflow(client, "pr1", "wf1", tasks)
    wfrun_id = (await start_wfrun(client, "pr1", "wf1"))["id"]

    async def first_done_long_running() -> dict[str, Any] | None:
        steps = steps_of(await get_wfrun(client, wfrun_id))
        done = steps["first"]["status"] == "succeeded" and steps["long"]["status"] == "running"
        return steps if done else None

    steps = await eventually(first_done_long_running, 60, what="first done, long running")
    first_run = steps["first"]["run_id"]
    refused = await client.delete(f"/api/v1/runs/{first_run}")
    assert refused.status_code == 409, refused.text
    assert wfrun_id in refused.json()["detail"]
    first = (await client.get(f"/api/v1/runs/{first_run}")).json()
    # A step's run is on behalf of whoever started the workflow run (here the anonymous loopback caller).
    assert (first["status"], first["requested_by"]) == ("succeeded", "local")

    assert (await client.post(f"/api/v1/workflow-runs/{wfrun_id}/stop")).status_code == 202
    assert (await wait_wfrun_ended(client, wfrun_id))["status"] == "stopped"
    assert (await client.delete(f"/api/v1/runs/{first_run}")).status_code == 204
    assert (await client.get(f"/api/v1/runs/{first_run}")).status_code == 404


async def test_max_active_runs_2_the_scheduler_frees_a_finished_runs_place(bus: Bus, wf_stack: Stack) -> None:
    _nc, js, s = bus
    client = wf_stack.client
    tasks = [{"name": "long", "place": 1, "exec": "await", "script": "sleep 600", "stop_grace_s": 1}]
    response = await client.put("/api/v1/projects/pr1/workflows/pool", json={"tasks": tasks, "max_active_runs": 2})
    assert response.status_code in (200, 201), response.text
    url = "/api/v1/projects/pr1/workflows/pool/runs"
    responses = await asyncio.gather(*(client.post(url, json={}) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [202] * 2 + [409] * 8, [r.text for r in responses]
    first, second = (r.json()["id"] for r in responses if r.status_code == 202)
    assert all(first in r.json()["detail"] and second in r.json()["detail"] for r in responses if r.status_code == 409)

    assert (await client.post(f"/api/v1/workflow-runs/{first}/stop")).status_code == 202
    assert (await wait_wfrun_ended(client, first))["status"] == "stopped"
    # The scheduler gave the stopped run's place up itself; a start does not have to take it over.
    kv = await js.key_value(s.wfactive_bucket)

    async def released() -> bool:
        return await active_runs(kv, workflow_id("pr1", "pool")) == [second]

    await eventually(released, 30, what="the stopped run's place released")
    third = await start_wfrun(client, "pr1", "pool")
    refused = await client.post(url, json={})
    assert refused.status_code == 409 and second in refused.json()["detail"] and third["id"] in refused.json()["detail"]
    for wfrun_id in (second, third["id"]):
        assert (await client.post(f"/api/v1/workflow-runs/{wfrun_id}/stop")).status_code == 202
