"""The gateway as a real process with the real recorder, driven over HTTP: runs are created, read back
at once, listed, stopped and deleted; bad input is refused and publishes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from scriptbus.events import CANCELLED_CLAIM, claims_bucket, executor_claim
from tests.helpers.gateway import Api, create


async def test_a_run_is_readable_right_after_post(api: Api) -> None:
    ids = []
    for i in range(50):
        response = await api.client.post(
            "/api/v1/runs",
            json={
                "script": f"echo {i}",
                "args": ["a b", "ü"],
                # Not in jsonb's key order (shorter keys first): the answer must still match the read model's.
                "env": {"N_LONGER": str(i), "B": "b", "A": "ä"},
                "description": f"run {i}",
                "timeout_s": 2.5,
                "pool": "nobody-serves-this",
            },
        )
        assert response.status_code == 202, response.text
        created = response.json()
        assert response.headers["location"] == f"/api/v1/runs/{created['id']}"
        got = await api.client.get(response.headers["location"])
        assert got.status_code == 200, f"run {i} not readable right after POST: {got.text}"
        run = got.json()
        # Byte for byte, key order included: the POST answer is what a GET shows.
        assert got.content == response.content
        assert run["status"] == "queued"
        assert (run["script"], run["args"], run["env"]) == (
            f"echo {i}",
            ["a b", "ü"],
            {"N_LONGER": str(i), "B": "b", "A": "ä"},
        )
        assert (run["description"], run["timeout_s"], run["stop_grace_s"]) == (f"run {i}", 2.5, 5.0)
        assert run["pool"] == "nobody-serves-this" and run["output"] == "" and run["started_at"] is None
        ids.append(created["id"])

    listed = (await api.client.get("/api/v1/runs", params={"limit": 20})).json()
    assert listed["total"] == 50
    assert [r["id"] for r in listed["items"]] == ids[::-1][:20]
    assert "output" not in listed["items"][0]
    page = (await api.client.get("/api/v1/runs", params={"limit": 20, "offset": 40})).json()
    assert [r["id"] for r in page["items"]] == ids[::-1][40:]


async def test_a_run_for_a_host_goes_to_that_hosts_queue(api: Api) -> None:
    run = await create(api, host="build-1.example.com", pool="linux")
    assert run["target_host"] == "build-1-example-com" and run["pool"] == "linux"
    # The host's queue existed before the request was published, so it holds the request.
    info = await api.js.consumer_info(api.subjects.events_stream, api.subjects.queue_consumer(run["target_host"]))
    assert info.num_pending == 1


async def test_a_large_script_and_env_are_stored_whole(api: Api) -> None:
    script = "# ünïcode\n" + "echo 0123456789abcdef\n" * 40_000
    env = {f"VAR_{i}": "v" * 900 for i in range(100)}
    run = await create(api, script=script, env=env, pool="nobody-serves-this")
    got = (await api.client.get(f"/api/v1/runs/{run['id']}")).json()
    assert got["script"] == script and got["env"] == env

    # Within the script's own cap: one event carries it when the server takes messages that large
    # (`scriptbus up` sets 8 MiB); a server with NATS' default 1 MiB gets a 413 and nothing is stored.
    before = await api.stored_messages()
    near_cap = await api.client.post("/api/v1/runs", json={"script": "x" * (1024 * 1024 - 100)})
    if api.nc.max_payload >= 2 * 1024 * 1024:
        assert near_cap.status_code == 202, near_cap.text[:300]
        stored = (await api.client.get(f"/api/v1/runs/{near_cap.json()['id']}")).json()
        assert len(stored["script"]) == 1024 * 1024 - 100
    else:
        assert near_cap.status_code == 413 and "bytes" in near_cap.json()["detail"], near_cap.text[:300]
        assert await api.stored_messages() == before


BAD_POSTS: list[tuple[str, Any, str]] = [
    ("not json", b"{not json", "body"),
    ("not an object", b"[1, 2]", "body"),
    ("missing script", {"args": []}, "script"),
    ("empty script", {"script": ""}, "script"),
    ("blank script", {"script": "  \n "}, "script"),
    ("script over 1 MiB", {"script": "x" * (1024 * 1024 + 1)}, "script"),
    ("NUL in script", {"script": "echo \x00"}, "script"),
    ("script not a string", {"script": 42}, "script"),
    ("args not strings", {"script": "true", "args": [1, 2]}, "args"),
    ("NUL in an arg", {"script": "true", "args": ["a\x00b"]}, "args"),
    ("bad env name", {"script": "true", "env": {"1BAD": "x"}}, "env"),
    ("env name with dash", {"script": "true", "env": {"A-B": "x"}}, "env"),
    ("env value not a string", {"script": "true", "env": {"A": 1}}, "env"),
    ("env over 128 KiB", {"script": "true", "env": {f"V{i}": "x" * 1024 for i in range(130)}}, "env"),
    ("negative timeout", {"script": "true", "timeout_s": -1}, "timeout_s"),
    ("zero timeout", {"script": "true", "timeout_s": 0}, "timeout_s"),
    ("timeout not a number", {"script": "true", "timeout_s": "soon"}, "timeout_s"),
    ("negative grace", {"script": "true", "stop_grace_s": -0.5}, "stop_grace_s"),
    ("pool with a dot", {"script": "true", "pool": "a.b"}, "pool"),
    ("pool with a wildcard", {"script": "true", "pool": ">"}, "pool"),
    ("empty host", {"script": "true", "host": ""}, "host"),
]


async def test_bad_input_is_refused_naming_the_field_and_publishes_nothing(api: Api) -> None:
    before = await api.stored_messages()
    for name, body, field in BAD_POSTS:
        if isinstance(body, bytes):
            response = await api.client.post("/api/v1/runs", content=body, headers={"content-type": "application/json"})
        else:
            response = await api.client.post("/api/v1/runs", json=body)
        assert response.status_code == 422, f"{name}: {response.status_code} {response.text[:300]}"
        errors = response.json()["detail"]
        locs = [e["loc"] for e in errors]
        assert any(loc[0] == "body" and (field == "body" or field in loc) for loc in locs), f"{name}: {locs}"
        assert all(e["msg"] for e in errors)

    huge = await api.client.post(
        "/api/v1/runs",
        content=b'{"script": "' + b"x" * (9 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413, huge.text
    form = await api.client.post("/api/v1/runs", data={"script": "true"})
    assert form.status_code == 415 and "application/json" in form.json()["detail"]

    run_id = str(uuid.uuid4())
    for method, path, params, status, loc in [
        ("GET", "/api/v1/runs/not-a-uuid", {}, 422, ["path", "run_id"]),
        ("GET", "/api/v1/runs/not-a-uuid/output", {}, 422, ["path", "run_id"]),
        ("POST", "/api/v1/runs/not-a-uuid/stop", {}, 422, ["path", "run_id"]),
        ("DELETE", "/api/v1/runs/not-a-uuid", {}, 422, ["path", "run_id"]),
        ("GET", "/api/v1/runs", {"status": "bogus"}, 422, ["query", "status"]),
        ("GET", "/api/v1/runs", {"limit": 0}, 422, ["query", "limit"]),
        ("GET", "/api/v1/runs", {"limit": 1001}, 422, ["query", "limit"]),
        ("GET", "/api/v1/runs", {"offset": -1}, 422, ["query", "offset"]),
        ("GET", f"/api/v1/runs/{run_id}/output", {"stream": "stdin"}, 422, ["query", "stream"]),
        ("GET", f"/api/v1/runs/{run_id}/output", {"offset": -1}, 422, ["query", "offset"]),
    ]:
        response = await api.client.request(method, path, params=params)  # type: ignore[arg-type]
        assert response.status_code == status, f"{method} {path} {params}: {response.text}"
        assert [e["loc"] for e in response.json()["detail"]] == [loc]

    for method, path in [
        ("GET", f"/api/v1/runs/{run_id}"),
        ("GET", f"/api/v1/runs/{run_id}/output"),
        ("POST", f"/api/v1/runs/{run_id}/stop"),
        ("DELETE", f"/api/v1/runs/{run_id}"),
    ]:
        response = await api.client.request(method, path)
        assert response.status_code == 404, f"{method} {path}: {response.text}"
        assert response.json() == {"detail": f"run {run_id} not found"}

    assert await api.stored_messages() == before
    assert "Traceback" not in api.gateway.log()


async def test_stopping_a_queued_run_cancels_it_for_good(api: Api) -> None:
    run = await create(api, pool="nobody-serves-this")
    response = await api.client.post(f"/api/v1/runs/{run['id']}/stop")
    assert response.status_code == 202, response.text
    stopped = response.json()
    assert stopped["status"] == "cancelled" and stopped["reason"] == "stopped before it started"
    assert stopped["started_at"] is None and stopped["finished_at"] is not None
    assert (await api.client.get(f"/api/v1/runs/{run['id']}")).json() == stopped

    # The claim is held, so no executor will ever start it.
    kv = await claims_bucket(api.js, api.subjects)
    assert (await kv.get(run["id"])).value == CANCELLED_CLAIM
    assert await api.event_types(run["id"]) == ["run.requested", "run.finished"]

    again = await api.client.post(f"/api/v1/runs/{run['id']}/stop")
    assert again.status_code == 409
    assert again.json() == {"detail": f"run {run['id']} already finished (cancelled)"}


async def test_stopping_a_claimed_run_asks_its_executor(api: Api) -> None:
    run = await create(api)
    # What an executor does when it takes the run.
    kv = await claims_bucket(api.js, api.subjects)
    await kv.create(run["id"], executor_claim("executor-1"))
    response = await api.client.post(f"/api/v1/runs/{run['id']}/stop")
    assert response.status_code == 202, response.text
    assert response.json()["stop_requested_at"] is not None
    assert response.json()["status"] == "queued"  # until the executor reports
    assert (await kv.get(run["id"])).value == executor_claim("executor-1")
    assert await api.event_types(run["id"]) == ["run.requested", "run.stop_requested"]


async def test_delete_only_once_finished(api: Api) -> None:
    run = await create(api, pool="nobody-serves-this")
    busy = await api.client.delete(f"/api/v1/runs/{run['id']}")
    assert busy.status_code == 409
    assert "queued" in busy.json()["detail"]
    assert (await api.client.post(f"/api/v1/runs/{run['id']}/stop")).status_code == 202
    gone = await api.client.delete(f"/api/v1/runs/{run['id']}")
    assert gone.status_code == 204 and gone.content == b""
    assert (await api.client.get(f"/api/v1/runs/{run['id']}")).status_code == 404
    assert (await api.client.delete(f"/api/v1/runs/{run['id']}")).status_code == 404
    assert run["id"] not in [r["id"] for r in (await api.client.get("/api/v1/runs")).json()["items"]]


async def test_list_filters_by_status(api: Api) -> None:
    queued = [await create(api, pool="p1") for _ in range(3)]
    cancelled = await create(api, pool="p1")
    await api.client.post(f"/api/v1/runs/{cancelled['id']}/stop")
    only_cancelled = (await api.client.get("/api/v1/runs", params={"status": "cancelled"})).json()
    assert [r["id"] for r in only_cancelled["items"]] == [cancelled["id"]] and only_cancelled["total"] == 1
    only_queued = (await api.client.get("/api/v1/runs", params={"status": "queued"})).json()
    assert [r["id"] for r in only_queued["items"]] == [r["id"] for r in reversed(queued)]
    assert (await api.client.get("/api/v1/runs", params={"status": "running"})).json() == {
        "items": [],
        "total": 0,
        "next_cursor": None,
    }


async def test_health_readiness_and_docs(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"nats": "ok", "postgres": "ok"}
    assert (await api.client.get("/docs")).status_code == 200
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert {"/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/runs/{run_id}/output"} <= set(paths)
    chunks = paths["/api/v1/runs/{run_id}/output/chunks"]["get"]
    assert "application/x-ndjson" in chunks["responses"]["200"]["content"]
    assert {p["name"] for p in chunks["parameters"]} >= {"offset", "stream", "follow", "tail", "limit"}
