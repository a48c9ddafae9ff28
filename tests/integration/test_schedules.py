"""Schedules against the real stack (gateway, recorder, schedulers, executor as processes): each tick fires
once with two schedulers and after one is SIGKILLed, overlap `skip` and `queue`, catch-up after a scheduler
downtime, pause and resume, and the API's refusals. Ticks are read back from the events stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from scriptbus.embedded import free_port
from scriptbus.events.publishing import publish_event
from scriptbus.events.runs import RunRequested
from scriptbus.events.schedules import FiredOutcome, ScheduleFired, fired_event_id, tick_run_id
from tests.helpers.api import wait_until_ready
from tests.helpers.processes import StartService
from tests.helpers.servers import Bus
from tests.helpers.stack import Stack
from tests.helpers.tokens import bearer, make_token
from tests.helpers.waiting import eventually
from tests.helpers.wfapi import put_workflow, wait_wfrun_ended
from tests.helpers.wfstream import of, stored

# A tick this late counts as missed: short, so a downtime of a few seconds shows catch-up.
LATE_AFTER_S = "1.5"


@pytest.fixture
async def stack(bus: Bus, start_service: StartService) -> AsyncIterator[Stack]:
    """Recorder, gateway, one executor and one scheduler (tests start more)."""
    port = free_port()
    services = {
        "recorder": start_service("recorder"),
        "scheduler": start_scheduler(start_service),
        "gateway": start_service("gateway", "--port", str(port)),
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        stack = Stack(client.base_url.__str__(), client, services, start_service)
        stack.add_executor("--host", "local", "--max-concurrency", "16")
        await wait_until_ready(client)
        yield stack
    _nc, js, s = bus
    for bucket in (s.command_names_bucket, s.wfactive_bucket, s.wfdefs_bucket, s.idempotency_bucket):
        try:
            await js.delete_key_value(bucket)
        except Exception:
            pass


def start_scheduler(start_service: StartService) -> Any:
    return start_service("scheduler", env={"SCRIPTBUS_SCHEDULE_LATE_AFTER_S": LATE_AFTER_S})


async def command(client: httpx.AsyncClient, name: str, script: str) -> str:
    response = await client.post("/api/v1/commands", json={"name": name, "script": script})
    assert response.status_code == 201, response.text
    command_id: str = response.json()["id"]
    return command_id


async def schedule(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def fires(bus: Bus, sched_id: str) -> list[ScheduleFired]:
    _nc, js, s = bus
    return of(await stored(js, s, s.schedule_event(sched_id, "fired")), ScheduleFired)


async def wait_fires(bus: Bus, sched_id: str, count: int, timeout: float = 60) -> list[ScheduleFired]:
    async def enough() -> list[ScheduleFired]:
        found = await fires(bus, sched_id)
        assert len(found) >= count, f"{len(found)} fired"
        return found

    return await eventually(enough, timeout=timeout, interval=0.3, what=f"{count} ticks fired")


async def test_every_2s_fires_once_per_tick_with_two_schedulers_and_after_one_is_killed(
    stack: Stack, bus: Bus, start_service: StartService
) -> None:
    c = stack.client
    second = start_scheduler(start_service)
    second.wait_for_log("schedule driver: caught up")
    cmd = await command(c, "tick", "echo tick")
    made = await schedule(c, name="every2", every_s=2, command_id="tick", overlap="allow")
    assert made["command_id"] == cmd and made["command_name"] == "tick" and len(made["next_ticks"]) == 5
    await wait_fires(bus, made["id"], 4)
    stack.services["scheduler"].kill()  # SIGKILL, whatever it was doing
    before = len(await fires(bus, made["id"]))
    await wait_fires(bus, made["id"], before + 4)
    assert (await c.delete(f"/api/v1/schedules/{made['id']}")).status_code == 204
    await asyncio.sleep(1)

    fired = await fires(bus, made["id"])
    ticks = [f.tick for f in fired]
    assert len(set(ticks)) == len(ticks), "a tick fired twice"
    # No tick lost while a scheduler was alive: each follows the one before by exactly 2 s.
    assert all(b - a == timedelta(seconds=2) for a, b in zip(ticks, ticks[1:], strict=False)), ticks
    assert {f.outcome for f in fired} == {FiredOutcome.STARTED}
    _nc, js, s = bus
    requests = of(await stored(js, s, s.run_requested("*", "*")), RunRequested)
    by_run = [r.run_id for r in requests if r.schedule_id == made["id"]]
    assert sorted(by_run) == sorted(tick_run_id(made["id"], f.generation, f.tick) for f in fired)

    # Each run ran the command, and says which schedule made it.
    last = fired[-1].run_id

    async def done() -> dict[str, Any]:
        run: dict[str, Any] = (await c.get(f"/api/v1/runs/{last}")).json()
        assert run["status"] == "succeeded", run
        return run

    run = await eventually(done, timeout=30, what="the last scheduled run succeeded")
    assert run["schedule_id"] == made["id"] and run["command_id"] == cmd and "tick" in run["output"]
    # The runs list finds them all by their schedule (projected: the last one has succeeded).
    listed = (await c.get("/api/v1/runs", params={"schedule_id": made["id"], "limit": 1000})).json()["items"]
    assert sorted(r["id"] for r in listed) == sorted(by_run)
    other = (await c.get("/api/v1/runs", params={"schedule_id": str(uuid.uuid4())})).json()["items"]
    assert other == []
    assert (await c.get("/api/v1/runs", params={"schedule_id": "nightly"})).status_code == 422


async def test_overlap_skip_skips_while_the_previous_run_runs_and_queue_waits_for_it(stack: Stack, bus: Bus) -> None:
    c = stack.client
    await command(c, "slow", "sleep 5")
    skip = await schedule(c, name="skip", every_s=2, command_id="slow", overlap="skip")
    queue = await schedule(c, name="queue", every_s=2, command_id="slow", overlap="queue")

    async def settled() -> bool:
        found = await fires(bus, skip["id"])
        started = [f for f in found if f.outcome is FiredOutcome.STARTED]
        return len(started) >= 2

    await eventually(settled, timeout=60, interval=0.5, what="two runs of the skip schedule")
    for ref in ("skip", "queue"):
        assert (await c.post(f"/api/v1/schedules/{ref}/pause")).json()["paused"] is True

    skipped = await fires(bus, skip["id"])
    first, *rest = skipped
    assert first.outcome is FiredOutcome.STARTED
    running = first.run_id
    for f in rest:
        if f.outcome is FiredOutcome.SKIPPED:
            assert f"the previous run {running} still runs" == f.reason
        else:
            running = f.run_id
    assert sum(f.outcome is FiredOutcome.SKIPPED for f in skipped) >= 2

    queued = await fires(bus, queue["id"])
    outcomes = [f.outcome for f in queued]
    assert outcomes[:2] == [FiredOutcome.STARTED, FiredOutcome.QUEUED], queued
    assert FiredOutcome.SKIPPED in outcomes  # a third tick while one already waits
    a, b = queued[0].run_id, queued[1].run_id

    async def both_ended() -> tuple[dict[str, Any], dict[str, Any]]:
        ra, rb = [(await c.get(f"/api/v1/runs/{r}")).json() for r in (a, b)]
        assert ra.get("finished_at") and rb.get("finished_at"), (ra, rb)
        return ra, rb

    ra, rb = await eventually(both_ended, timeout=40, interval=0.5, what="the queued run ran")
    assert rb["status"] == "succeeded" and rb["schedule_id"] == queue["id"]
    assert datetime.fromisoformat(rb["started_at"]) >= datetime.fromisoformat(ra["finished_at"])


async def test_catch_up_after_a_scheduler_downtime_last_runs_one_missed_tick_none_runs_none(
    stack: Stack, bus: Bus, start_service: StartService
) -> None:
    c = stack.client
    await command(c, "quick", "true")
    last = await schedule(c, name="last", every_s=2, command_id="quick", catch_up="last", overlap="allow")
    none = await schedule(c, name="none", every_s=2, command_id="quick", catch_up="none", overlap="allow")
    await wait_fires(bus, last["id"], 1)
    await wait_fires(bus, none["id"], 1)
    stack.services["scheduler"].kill()
    await asyncio.sleep(0.5)
    down_from = max(f.tick for f in await fires(bus, last["id"]))
    await asyncio.sleep(7)  # three ticks or more go by with no scheduler
    restarted = start_scheduler(start_service)
    restarted.wait_for_log("schedule driver: caught up")
    for sched in (last, none):
        await wait_fires(bus, sched["id"], len([f for f in await fires(bus, sched["id"])]) + 1)
    late = {}
    for sched in (last, none):
        after = [f for f in await fires(bus, sched["id"]) if f.tick > down_from]
        late[sched["name"]] = first_after = after[0]
        assert first_after.missed >= 2, after  # the older missed ticks were passed over
    assert late["last"].outcome is FiredOutcome.STARTED and late["last"].run_id is not None
    assert late["none"].outcome is FiredOutcome.SKIPPED and late["none"].run_id is None
    assert "missed" in late["none"].reason

    async def shown() -> bool:
        recent = (await c.get("/api/v1/schedules/none")).json()["recent"]
        return any(f["outcome"] == "skipped" and f["missed"] >= 2 for f in recent)

    await eventually(shown, timeout=15, what="the API shows the skipped catch-up tick")


async def test_pause_stops_ticks_and_resume_goes_on_from_now(stack: Stack, bus: Bus) -> None:
    c = stack.client
    await command(c, "quick", "true")
    made = await schedule(c, name="p", every_s=1, command_id="quick", overlap="allow")
    await wait_fires(bus, made["id"], 1)
    paused = (await c.post("/api/v1/schedules/p/pause")).json()
    assert paused["paused"] is True and paused["next_ticks"] == []
    await asyncio.sleep(1.5)
    count = len(await fires(bus, made["id"]))
    await asyncio.sleep(3)
    assert len(await fires(bus, made["id"])) == count
    resumed_at = datetime.now().astimezone()
    assert (await c.post("/api/v1/schedules/p/resume")).json()["paused"] is False
    after = await wait_fires(bus, made["id"], count + 1)
    # No tick that fell while paused was fired late.
    assert all(f.tick >= resumed_at - timedelta(seconds=1) for f in after[count:])


async def test_bad_schedules_are_422_naming_the_field_names_are_unique_and_a_run_token_cannot_create(
    stack: Stack,
) -> None:
    c = stack.client
    await command(c, "quick", "true")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"cron": "* * * 13 *"}, "cron"),
        ({"every_s": 5, "timezone": "Nowhere/Land"}, "timezone"),
        ({"every_s": 5, "cron": "* * * * *"}, "cron and every_s"),
        ({}, "cron and every_s"),
        ({"every_s": 5, "command_id": "no-such"}, "command_id"),
        ({"every_s": 5, "command_id": None, "workflow": {"project": "p", "workflow": "w"}}, "workflow"),
    ]
    for fields, named in bad:
        body = {"name": "bad", "command_id": "quick", **fields}
        response = await c.post("/api/v1/schedules", json=body)
        assert response.status_code == 422, (fields, response.text)
        assert named in response.text, (fields, response.text)
    await schedule(c, name="dup", every_s=60, command_id="quick")
    again = await c.post("/api/v1/schedules", json={"name": "dup", "every_s": 60, "command_id": "quick"})
    assert again.status_code == 409 and "taken" in again.text
    renamed = await c.put("/api/v1/schedules/dup", json={"name": "other", "every_s": 60, "command_id": "quick"})
    assert renamed.status_code == 422 and "name" in renamed.text
    patched = await c.patch("/api/v1/schedules/dup", json={"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["cron"] == "0 9 * * 1-5" and patched.json()["every_s"] is None
    assert patched.json()["next_ticks"][0].endswith(("+01:00", "+02:00"))
    listed = (await c.get("/api/v1/schedules")).json()
    assert [s["name"] for s in listed["items"]] == ["dup"]

    admin = (await make_token(c, "admin", "ops"))["token"]
    run = (await make_token(c, "run", "ci", admin))["token"]
    body = {"name": "byci", "every_s": 60, "command_id": "quick"}
    assert (await c.post("/api/v1/schedules", json=body, headers=bearer(run))).status_code == 403
    assert (await c.post("/api/v1/schedules/dup/pause", headers=bearer(run))).status_code == 403
    assert (await c.get("/api/v1/schedules/dup", headers=bearer(run))).status_code == 200
    made = await c.post("/api/v1/schedules", json=body, headers=bearer(admin))
    assert made.status_code == 201 and made.json()["created_by"] == "ops"
    assert (await c.delete("/api/v1/schedules/dup", headers=bearer(admin))).status_code == 204
    assert (await c.get("/api/v1/schedules/dup", headers=bearer(admin))).status_code == 404


async def test_a_workflow_target_starts_workflow_runs_that_name_the_schedule(stack: Stack, bus: Bus) -> None:
    c = stack.client
    await put_workflow(c, "pr1", "wf1", [{"name": "t1", "place": 1, "script": "sleep 3"}])
    made = await schedule(
        c, name="wf", every_s=1, workflow={"project": "pr1", "workflow": "wf1"}, overlap="allow", command_id=None
    )
    # max_active_runs is 1: ticks while the workflow runs are skipped, naming its active run.
    found = await wait_fires(bus, made["id"], 3)
    assert (await c.post("/api/v1/schedules/wf/pause")).status_code == 200
    started = [f for f in found if f.outcome is FiredOutcome.STARTED]
    assert started and started[0].wfrun_id is not None
    assert any(f.outcome is FiredOutcome.SKIPPED and "active run" in f.reason for f in found), found
    wfrun = await wait_wfrun_ended(c, started[0].wfrun_id)
    assert wfrun["status"] == "succeeded" and wfrun["schedule_id"] == made["id"]


async def test_a_scheduler_dying_between_a_tick_and_its_run_request_leaves_no_run_missing(
    stack: Stack, bus: Bus
) -> None:
    """The decision of a scheduler that died before its request: a live one makes the request."""
    c = stack.client
    await command(c, "quick", "echo redone")
    made = await schedule(c, name="late", every_s=3600, command_id="quick")
    _nc, js, s = bus
    [(generation, _created)] = await stored(js, s, s.schedule_event(made["id"], "created"))
    tick = datetime.fromisoformat(made["next_ticks"][0])
    run_id = tick_run_id(made["id"], generation, tick)
    # Exactly what the dead scheduler stored, and nothing more.
    await publish_event(
        js,
        s,
        ScheduleFired(
            event_id=fired_event_id(made["id"], generation, tick),
            schedule_id=made["id"],
            generation=generation,
            tick=tick,
            outcome=FiredOutcome.STARTED,
            run_id=run_id,
        ),
    )

    async def ran() -> dict[str, Any]:
        run: dict[str, Any] = (await c.get(f"/api/v1/runs/{run_id}")).json()
        assert run.get("status") == "succeeded", run
        return run

    run = await eventually(ran, timeout=30, interval=0.3, what="the run of the dead scheduler's tick")
    assert run["schedule_id"] == made["id"] and "redone" in run["output"]
    requests = of(await stored(js, s, s.run_requested(run_id, "*")), RunRequested)
    assert len(requests) == 1


async def test_the_cli_creates_lists_shows_pauses_resumes_and_removes_a_schedule(stack: Stack, bus: Bus) -> None:
    from tests.integration.test_cli import cli

    api = stack.api
    await command(stack.client, "hello", 'echo "hello $1"')
    code, out, err = await cli(
        api,
        "schedules",
        "create",
        "greet",
        "--every",
        "2",
        "--command",
        "hello",
        "--overlap",
        "allow",
        "--arg",
        "world",
    )
    assert code == 0, err
    assert b"every 2s in UTC; overlap allow, catch-up last" in out and b"command hello world" in out
    made = (await stack.client.get("/api/v1/schedules/greet")).json()
    await wait_fires(bus, made["id"], 1)
    code, out, err = await cli(api, "schedules", "list")
    assert code == 0 and b"greet" in out and b"every 2s" in out and b"active" in out and b"command hello" in out, (
        out,
        err,
    )
    code, out, err = await cli(api, "schedules", "show", "greet")
    assert code == 0 and b"recent ticks:" in out and b"started" in out, (out, err)
    code, out, err = await cli(api, "schedules", "pause", "greet")
    assert code == 0 and b"paused" in out, err
    code, out, err = await cli(api, "schedules", "resume", "greet")
    assert code == 0 and b"active" in out, err
    code, out, err = await cli(api, "--json", "schedules", "show", "greet")
    assert code == 0 and b'"name": "greet"' in out, err
    code, out, err = await cli(api, "schedules", "create", "bad", "--cron", "* * *", "--command", "hello")
    assert code != 0 and b"five fields" in err, (out, err)
    code, out, err = await cli(api, "schedules", "create", "wf", "--every", "5", "--workflow", "nope")
    assert code != 0 and b"PROJECT/WORKFLOW" in err, (out, err)
    code, out, err = await cli(api, "schedules", "rm", "greet")
    assert code == 0 and b"deleted schedule greet" in out, err
    code, out, err = await cli(api, "schedules", "show", "greet")
    assert code != 0 and b"not found" in err, (out, err)
    run = (
        await stack.client.get(f"/api/v1/runs/{made['last_run_id'] or (await fires(bus, made['id']))[0].run_id}")
    ).json()
    assert run["args"] == ["world"]
