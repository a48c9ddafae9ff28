"""Fan-outs through the REST API with every service a real process and three executors on different
host names: rolling one host at a time, retry, max_failures, stop, the scheduler SIGKILLed mid-way, and
the roles. Starts are counted from the events stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scriptbus.events.fanouts import fanout_run_id
from tests.helpers.fanouts import (
    EXECUTORS,
    HOSTS,
    by_host,
    fleet_online,
    get_fanout,
    start_fanout,
    wait_fanout_finished,
)
from tests.helpers.processes import StartService
from tests.helpers.servers import Bus
from tests.helpers.stack import Stack, running_stack
from tests.helpers.tokens import bearer, make_token
from tests.helpers.waiting import eventually
from tests.helpers.wfstream import starts

# The second host to run fails (each run counts the marks left before it); a retry, third, succeeds.
SECOND_FAILS = 'n=$(ls "$MARKS" | wc -l); touch "$MARKS/$(date +%s%N)"; echo "run $n"; [ "$n" != 1 ]'


@pytest.fixture
async def fleet(bus: Bus, start_service: StartService) -> AsyncIterator[Stack]:
    _nc, js, s = bus
    async with running_stack(start_service, EXECUTORS) as stack:
        await fleet_online(stack.client)
        yield stack
    for bucket in (s.command_names_bucket, s.idempotency_bucket):
        try:
            await js.delete_key_value(bucket)
        except Exception:
            pass


async def test_max_parallel_1_runs_one_host_at_a_time_and_retry_reruns_only_the_failed_host(
    bus: Bus, fleet: Stack, exchange_dir: Path
) -> None:
    _nc, js, s = bus
    client = fleet.client
    fanout = await start_fanout(
        client, {"script": SECOND_FAILS, "env": {"MARKS": str(exchange_dir)}, "max_parallel": 1}
    )
    assert fanout["hosts"] == list(HOSTS)
    assert fanout["status"] == "running"
    end = await wait_fanout_finished(client, fanout["id"])
    assert end["status"] == "failed", end
    runs = by_host(end)
    assert {h: (r["status"], r["exit_code"]) for h, r in runs.items()} == {
        "fo-a": ("succeeded", 0),
        "fo-b": ("failed", 1),
        "fo-c": ("succeeded", 0),
    }
    assert end["counts"] == {"succeeded": 2, "failed": 1}
    # One host at a time: each run started after the one before it had finished.
    details = [(await client.get(f"/api/v1/runs/{runs[h]['run_id']}")).json() for h in HOSTS]
    assert [(d["host"], d["fanout_id"], d["attempt"]) for d in details] == [(h, fanout["id"], 1) for h in HOSTS]
    for before, after in zip(details, details[1:], strict=False):
        assert before["finished_at"] <= after["started_at"], (before, after)

    retried = await client.post(f"/api/v1/fanouts/{fanout['id']}/retry")
    assert retried.status_code == 202, retried.text
    end = await wait_fanout_finished(client, fanout["id"])
    assert end["status"] == "succeeded", end
    assert {h: (r["status"], r["attempt"]) for h, r in by_host(end).items()} == {
        "fo-a": ("succeeded", 1),
        "fo-b": ("succeeded", 2),
        "fo-c": ("succeeded", 1),
    }
    expected = {fanout_run_id(fanout["id"], h, 1) for h in HOSTS} | {fanout_run_id(fanout["id"], "fo-b", 2)}
    assert await starts(js, s) == dict.fromkeys(expected, 1)
    # Nothing failed any more: a second retry has nothing to do.
    again = await client.post(f"/api/v1/fanouts/{fanout['id']}/retry")
    assert again.status_code == 409 and "nothing to retry" in again.text
    listed = (await client.get("/api/v1/fanouts")).json()
    assert [f["id"] for f in listed["items"]] == [fanout["id"]] and listed["total"] == 1


async def test_max_failures_stops_starting_new_hosts(bus: Bus, fleet: Stack) -> None:
    _nc, js, s = bus
    client = fleet.client
    fanout = await start_fanout(client, {"script": "exit 3", "max_parallel": 1, "max_failures": 1})
    end = await wait_fanout_finished(client, fanout["id"])
    assert end["status"] == "failed"
    assert {h: r["status"] for h, r in by_host(end).items()} == {
        "fo-a": "failed",
        "fo-b": "skipped",
        "fo-c": "skipped",
    }
    assert by_host(end)["fo-a"]["exit_code"] == 3
    assert await starts(js, s) == {fanout_run_id(fanout["id"], "fo-a", 1): 1}


async def test_labels_and_hosts_choose_the_executors_and_bad_filters_are_422(fleet: Stack) -> None:
    client = fleet.client
    web = await start_fanout(client, {"script": "true", "labels": {"role": "web"}})
    assert web["hosts"] == ["fo-a", "fo-b"]
    one = await start_fanout(client, {"script": "true", "hosts": ["fo-c"]})
    assert one["hosts"] == ["fo-c"]
    for fanout in (web, one):
        assert (await wait_fanout_finished(client, fanout["id"]))["status"] == "succeeded"

    nobody = await client.post("/api/v1/fanouts", json={"script": "true", "labels": {"role": "cache"}})
    assert nobody.status_code == 422
    assert "role=cache" in nobody.text and nobody.json()["detail"][0]["loc"] == ["body", "labels"]
    unknown = await client.post("/api/v1/fanouts", json={"script": "true", "hosts": ["fo-a", "ghost"]})
    assert unknown.status_code == 422
    assert "ghost" in unknown.text and "fo-a" not in unknown.json()["detail"][0]["msg"]
    both = await client.post("/api/v1/fanouts", json={"script": "true", "command_id": "x"})
    assert both.status_code == 422


async def test_stop_stops_every_run_and_skips_the_hosts_not_started_a_read_token_gets_403(fleet: Stack) -> None:
    client = fleet.client
    fanout = await start_fanout(client, {"script": "sleep 600", "stop_grace_s": 1, "max_parallel": 2})

    async def two_running() -> bool:
        runs = by_host(await get_fanout(client, fanout["id"]))
        return [runs[h]["status"] for h in HOSTS] == ["running", "running", "pending"]

    await eventually(two_running, 60, interval=0.2, what="two hosts running")
    stopped = await client.post(f"/api/v1/fanouts/{fanout['id']}/stop")
    assert stopped.status_code == 202, stopped.text
    end = await wait_fanout_finished(client, fanout["id"])
    assert end["status"] == "stopped"
    assert {h: r["status"] for h, r in by_host(end).items()} == {
        "fo-a": "stopped",
        "fo-b": "stopped",
        "fo-c": "skipped",
    }
    again = await client.post(f"/api/v1/fanouts/{fanout['id']}/stop")
    assert again.status_code == 409

    admin = await make_token(client, "admin", "boss")
    reader = await make_token(client, "read", "viewer", as_token=admin["token"])
    refused = await client.post("/api/v1/fanouts", json={"script": "true"}, headers=bearer(reader["token"]))
    assert refused.status_code == 403 and "run" in refused.json()["detail"]
    for verb in ("stop", "retry"):
        refused = await client.post(f"/api/v1/fanouts/{fanout['id']}/{verb}", headers=bearer(reader["token"]))
        assert refused.status_code == 403
    seen = await client.get(f"/api/v1/fanouts/{fanout['id']}", headers=bearer(reader["token"]))
    assert seen.status_code == 200 and seen.json()["status"] == "stopped"


async def test_two_schedulers_one_sigkilled_in_a_rolling_fanout_start_each_host_once(
    bus: Bus, fleet: Stack, start_service: StartService
) -> None:
    _nc, js, s = bus
    client = fleet.client
    # Two schedulers decide at once all along; one of them is SIGKILLed and restarted again and again.
    start_service("scheduler")
    fanouts = [await start_fanout(client, {"script": "sleep 1", "max_parallel": 1}) for _ in range(3)]
    scheduler = fleet.services["scheduler"]
    for _ in range(4):
        await asyncio.sleep(0.7)
        scheduler.kill()
        scheduler = start_service("scheduler")
    for fanout in fanouts:
        end = await wait_fanout_finished(client, fanout["id"], timeout=120)
        assert end["status"] == "succeeded", end
    expected = {fanout_run_id(f["id"], h, 1) for f in fanouts for h in HOSTS}
    assert await starts(js, s) == dict.fromkeys(expected, 1)


async def test_a_hosts_run_is_kept_while_its_fanout_runs_and_retry_skips_deleted_runs(
    fleet: Stack, exchange_dir: Path
) -> None:
    client = fleet.client
    first_quick = 'n=$(ls "$MARKS" | wc -l); touch "$MARKS/$n"; [ "$n" = 0 ] || sleep 600'
    fanout = await start_fanout(
        client, {"script": first_quick, "env": {"MARKS": str(exchange_dir)}, "max_parallel": 1, "stop_grace_s": 1}
    )

    async def second_running() -> dict[str, dict[str, object]]:
        runs = by_host(await get_fanout(client, fanout["id"]))
        assert [runs[h]["status"] for h in HOSTS] == ["succeeded", "running", "pending"]
        return runs

    runs = await eventually(second_running, 60, interval=0.2, what="fo-a done, fo-b running")
    refused = await client.delete(f"/api/v1/runs/{runs['fo-a']['run_id']}")
    assert refused.status_code == 409 and fanout["id"] in refused.text
    assert (await client.post(f"/api/v1/fanouts/{fanout['id']}/stop")).status_code == 202
    assert (await wait_fanout_finished(client, fanout["id"]))["status"] == "stopped"
    assert (await client.delete(f"/api/v1/runs/{runs['fo-a']['run_id']}")).status_code == 204
    assert by_host(await get_fanout(client, fanout["id"]))["fo-a"]["status"] == "deleted"

    retried = await client.post(f"/api/v1/fanouts/{fanout['id']}/retry")
    assert retried.status_code == 202, retried.text
    statuses = {h: r["status"] for h, r in by_host(retried.json()).items()}
    # fo-b may be started again already by the time the answer is read; fo-c waits for it (max_parallel 1).
    assert statuses["fo-a"] == "deleted" and statuses["fo-c"] == "pending", statuses
    assert statuses["fo-b"] in ("pending", "queued", "running"), statuses

    async def both_running() -> bool:
        runs = by_host(await get_fanout(client, fanout["id"]))
        return [runs[h]["status"] for h in HOSTS] == ["deleted", "running", "pending"]

    await eventually(both_running, 60, interval=0.2, what="fo-b running again")
    assert (await client.post(f"/api/v1/fanouts/{fanout['id']}/stop")).status_code == 202
    assert (await wait_fanout_finished(client, fanout["id"]))["status"] == "stopped"
