"""The runs list: filters by command, host, pool and creation time; a cursor that pages newest-first
without skipping or repeating while new runs arrive; and the reason a queued run waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.helpers.api import wait_for_status
from tests.helpers.gateway import Api, create
from tests.helpers.processes import ServiceProcess
from tests.helpers.waiting import eventually


async def ids(api: Api, **params: Any) -> list[str]:
    response = await api.client.get("/api/v1/runs", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"]) or body["next_cursor"] is not None
    return [r["id"] for r in body["items"]]


async def test_filters_by_command_host_pool_and_creation_time(api: Api) -> None:
    command = (await api.client.post("/api/v1/commands", json={"name": "job", "script": "true", "pool": "p1"})).json()
    in_p1 = [(await create(api, pool="p1"))["id"] for _ in range(2)]
    in_p2 = [(await create(api, pool="p2"))["id"] for _ in range(2)]
    on_host = [(await create(api, pool="p1", host="build-1.example.com"))["id"] for _ in range(2)]
    from_command = [(await api.client.post("/api/v1/commands/job/runs", json={})).json()["id"] for _ in range(2)]
    middle = (await api.client.get(f"/api/v1/runs/{on_host[0]}")).json()["created_at"]

    assert await ids(api, command_id=command["id"]) == from_command[::-1]
    assert await ids(api, command_id="job") == from_command[::-1]
    assert await ids(api, command_id="no-such-command") == []
    assert await ids(api, pool="p2") == in_p2[::-1]
    assert await ids(api, pool="p1") == (in_p1 + on_host + from_command)[::-1]
    # Queued runs are found by the host they are meant for, by its name or its token.
    assert await ids(api, host="build-1.example.com") == on_host[::-1]
    assert await ids(api, host="build-1-example-com") == on_host[::-1]
    assert await ids(api, host="build-1-example-com", pool="p2") == []
    assert await ids(api, created_after=middle) == (on_host[1:] + from_command)[::-1]
    assert await ids(api, created_before=middle) == (in_p1 + in_p2)[::-1]
    assert await ids(api, created_after=middle, pool="p1", command_id="job", limit=1) == [from_command[1]]
    # A time without a zone is UTC.
    naive = middle.removesuffix("Z").split("+")[0]
    assert await ids(api, created_before=naive) == (in_p1 + in_p2)[::-1]
    counted = (await api.client.get("/api/v1/runs", params={"pool": "p1", "limit": 1})).json()
    assert counted["total"] == 6 and len(counted["items"]) == 1 and counted["next_cursor"]


async def test_a_cursor_pages_each_run_once_while_new_runs_arrive(api: Api) -> None:
    old = [(await create(api, pool="nobody"))["id"] for _ in range(23)]
    seen: list[str] = []
    added: list[str] = []
    page = (await api.client.get("/api/v1/runs", params={"limit": 5})).json()
    while True:
        seen += [r["id"] for r in page["items"]]
        # New runs land in front of the list; the pages behind the cursor do not move.
        added += [(await create(api, pool="nobody"))["id"] for _ in range(3)]
        if page["next_cursor"] is None:
            break
        response = await api.client.get("/api/v1/runs", params={"limit": 5, "cursor": page["next_cursor"]})
        assert response.status_code == 200, response.text
        page = response.json()
    assert seen == old[::-1]
    assert not set(seen) & set(added)
    # 23 runs in pages of 5: the last page holds 3 and says no more follow.
    assert len(page["items"]) == 3

    # The first page plus offsets of an unchanged list agree with the cursor.
    first = (await api.client.get("/api/v1/runs", params={"limit": 10})).json()
    second = (await api.client.get("/api/v1/runs", params={"limit": 10, "cursor": first["next_cursor"]})).json()
    by_offset = (await api.client.get("/api/v1/runs", params={"limit": 10, "offset": 10})).json()
    assert [r["id"] for r in second["items"]] == [r["id"] for r in by_offset["items"]]

    bad_offset = await api.client.get("/api/v1/runs", params={"cursor": first["next_cursor"], "offset": 3})
    assert bad_offset.status_code == 422 and bad_offset.json()["detail"][0]["loc"] == ["query", "offset"]
    zero_offset = await api.client.get("/api/v1/runs", params={"cursor": first["next_cursor"], "offset": 0})
    assert zero_offset.status_code == 200
    for bogus in ["garbage", "eyJ0IjoxfQ", "e30"]:
        response = await api.client.get("/api/v1/runs", params={"cursor": bogus})
        assert response.status_code == 422, bogus
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert "Traceback" not in api.gateway.log()


async def wait_reason(api: Api, run_id: str, reason: str, timeout: float = 20) -> dict[str, Any]:
    async def with_reason() -> dict[str, Any]:
        run: dict[str, Any] = (await api.client.get(f"/api/v1/runs/{run_id}")).json()
        assert run["reason"] == reason, f"reason {run.get('reason')!r}"
        return run

    return await eventually(with_reason, timeout, interval=0.1, what=f"run {run_id} with reason {reason!r}")


async def test_a_queued_run_says_why_it_waits(api: Api, start_service: Callable[..., ServiceProcess]) -> None:
    gpu = await create(api, pool="gpu")
    assert gpu["status"] == "queued" and gpu["reason"] == "no live executor serves pool 'gpu'"
    on_host = await create(api, host="build-1")
    assert on_host["reason"] == "no live executor on host 'build-1'"
    listed = (await api.client.get("/api/v1/runs")).json()["items"]
    assert [r["reason"] for r in listed] == [on_host["reason"], gpu["reason"]]

    # One slot, taken by a long run: the next run of the pool waits with nothing to explain.
    executor = start_service("executor", "--host", "build-1", "--max-concurrency", "1")
    busy = await create(api, script="sleep 60")
    await wait_for_status(api.client, busy["id"], "running")
    waiting = await create(api, script="echo later")
    assert waiting["status"] == "queued" and waiting["reason"] == "", waiting
    await wait_reason(api, gpu["id"], "no live executor serves pool 'gpu'")

    # Once the executor is silent past SCRIPTBUS_EXECUTOR_LOST_AFTER_S (3 s here) it serves nothing.
    executor.kill()
    await wait_reason(api, waiting["id"], "no live executor serves pool 'default'")
    listed = (await api.client.get("/api/v1/runs", params={"status": "queued"})).json()["items"]
    assert {r["id"]: r["reason"] for r in listed}[waiting["id"]] == "no live executor serves pool 'default'"
