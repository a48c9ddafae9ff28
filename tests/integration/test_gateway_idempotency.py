"""Idempotency-Key on every POST: a retry (sequential or concurrent) gets the original response and makes
nothing new; a reused key with another request is a 422; a failed request leaves the key free."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from starlette.requests import Request

from scriptbus.events import RunRequested, ensure_queue, idempotency_bucket, new_id, publish_event
from scriptbus.gateway.auth import ANONYMOUS
from scriptbus.gateway.idempotency import STALE_PENDING_S, bucket_key, fingerprint
from tests.helpers.gateway import Api, create


async def run_requests(api: Api) -> int:
    """How many run.requested events the stream holds: the runs that were really made."""
    info = await api.js.stream_info(
        api.subjects.events_stream, subjects_filter=f"{api.subjects.prefix}.runs.*.requested.*"
    )
    return sum((info.state.subjects or {}).values())


async def test_a_retried_run_request_makes_one_run(api: Api) -> None:
    body = {"script": "echo once", "pool": "nobody", "args": ["a"]}
    first = await api.client.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "run-1"})
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    # The same request, spelled differently (key order, spacing), is the same request.
    respelled = json.dumps({"args": ["a"], "pool": "nobody", "script": "echo once"}, indent=2)
    second = await api.client.post(
        "/api/v1/runs",
        content=respelled,
        headers={"Idempotency-Key": "run-1", "content-type": "application/json"},
    )
    assert second.status_code == 202
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert await run_requests(api) == 1
    assert (await api.client.get("/api/v1/runs")).json()["total"] == 1

    changed = await api.client.post("/api/v1/runs", json={**body, "args": ["b"]}, headers={"Idempotency-Key": "run-1"})
    assert changed.status_code == 422
    assert changed.json() == {"detail": "Idempotency-Key 'run-1' was already used with a different request"}
    elsewhere = await api.client.post(
        "/api/v1/commands", json={"name": "c", "script": "true"}, headers={"Idempotency-Key": "run-1"}
    )
    assert elsewhere.status_code == 422
    assert await run_requests(api) == 1
    assert (await api.client.get("/api/v1/commands")).json()["total"] == 0

    # Without a key, or with another one, the same body is a new run.
    assert (await api.client.post("/api/v1/runs", json=body)).json()["id"] != first.json()["id"]
    other = await api.client.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "run-2"})
    assert other.json()["id"] != first.json()["id"]
    assert await run_requests(api) == 3


async def test_concurrent_duplicates_make_one_run(api: Api) -> None:
    body = {"script": "echo race", "pool": "nobody"}
    responses = await asyncio.gather(
        *[api.client.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "race"}) for _ in range(12)]
    )
    assert [r.status_code for r in responses] == [202] * 12, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 11
    assert await run_requests(api) == 1

    # Two different requests racing for one key: one acts, the other is refused.
    a, b = await asyncio.gather(
        api.client.post("/api/v1/runs", json={"script": "echo a"}, headers={"Idempotency-Key": "ab"}),
        api.client.post("/api/v1/runs", json={"script": "echo b"}, headers={"Idempotency-Key": "ab"}),
    )
    assert sorted([a.status_code, b.status_code]) == [202, 422]
    assert await run_requests(api) == 2


async def test_every_post_honours_the_key(api: Api) -> None:
    key = {"Idempotency-Key": "cmd"}
    made = [
        await api.client.post("/api/v1/commands", json={"name": "c1", "script": "true"}, headers=key) for _ in range(3)
    ]
    # Not a 409 for the "taken" name: the retry gets the original 201.
    assert [r.status_code for r in made] == [201, 201, 201]
    assert made[1].json() == made[0].json() and made[1].headers["location"] == made[0].headers["location"]
    assert (await api.client.get("/api/v1/commands")).json()["total"] == 1

    runs = [
        await api.client.post("/api/v1/commands/c1/runs", json={"args": ["x"]}, headers={"Idempotency-Key": "cr"})
        for _ in range(2)
    ]
    assert [r.status_code for r in runs] == [202, 202] and runs[0].json() == runs[1].json()
    via_runs = [
        await api.client.post("/api/v1/runs", json={"command_id": "c1"}, headers={"Idempotency-Key": "vr"})
        for _ in range(2)
    ]
    assert via_runs[0].json()["id"] == via_runs[1].json()["id"]
    assert await run_requests(api) == 2

    run = await create(api, pool="nobody")
    stops = [
        await api.client.post(f"/api/v1/runs/{run['id']}/stop", headers={"Idempotency-Key": "stop"}) for _ in range(2)
    ]
    # Without the key the second stop would be a 409 (already cancelled).
    assert [s.status_code for s in stops] == [202, 202]
    assert stops[0].json() == stops[1].json() and stops[0].json()["status"] == "cancelled"
    assert stops[1].headers["idempotent-replayed"] == "true"
    assert (await api.client.post(f"/api/v1/runs/{run['id']}/stop")).status_code == 409


async def test_a_failed_request_leaves_the_key_free(api: Api) -> None:
    key = {"Idempotency-Key": "later"}
    missing = await api.client.post("/api/v1/commands/later/runs", json={}, headers=key)
    assert missing.status_code == 404
    await api.client.post("/api/v1/commands", json={"name": "later", "script": "true"})
    retried = await api.client.post("/api/v1/commands/later/runs", json={}, headers=key)
    assert retried.status_code == 202, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert (await api.client.post("/api/v1/commands/later/runs", json={}, headers=key)).json() == retried.json()

    too_long = await api.client.post("/api/v1/runs", json={"script": "true"}, headers={"Idempotency-Key": "k" * 201})
    assert too_long.status_code == 422
    assert too_long.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    longest = await api.client.post(
        "/api/v1/runs", json={"script": "true", "pool": "nobody"}, headers={"Idempotency-Key": "k" * 200}
    )
    assert longest.status_code == 202
    assert "Traceback" not in api.gateway.log()


async def test_a_retry_after_the_gateway_died_mid_request_makes_no_second_run(api: Api) -> None:
    # What a gateway that died mid-request leaves: its pending record (now stale) and, maybe, the run
    # it had already queued. The retry takes the record over and must name that run, not make another.
    path, body = "/api/v1/runs", json.dumps({"script": "echo once", "pool": "nobody"}).encode()

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": []}
    request_hash = await fingerprint(Request(scope, receive))
    queued_by_the_dead = new_id()
    stale = (datetime.now(UTC) - timedelta(seconds=STALE_PENDING_S + 5)).isoformat()
    kv = await idempotency_bucket(api.js, api.subjects)
    await kv.put(
        bucket_key(ANONYMOUS.scope, "crash-1"),
        json.dumps(
            {"request": request_hash, "state": "pending", "at": stale, "resource_id": queued_by_the_dead}
        ).encode(),
    )
    await ensure_queue(api.js, api.subjects, "nobody")
    await publish_event(
        api.js, api.subjects, RunRequested(run_id=queued_by_the_dead, script="echo once", pool="nobody")
    )

    retry = await api.client.post(
        path, content=body, headers={"Idempotency-Key": "crash-1", "content-type": "application/json"}
    )
    assert retry.status_code == 202, retry.text
    assert retry.json()["id"] == queued_by_the_dead
    listed = (await api.client.get("/api/v1/runs", params={"pool": "nobody"})).json()
    assert [run["id"] for run in listed["items"]] == [queued_by_the_dead]
