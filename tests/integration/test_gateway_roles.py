"""Tokens with roles against the real gateway and recorder: what each role may do, revocation at once on
every gateway, idempotency keys per token, the caller's name in events and reads, and /docs offline."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats.js.errors

from scriptbus.embedded import EmbeddedNats, free_port
from scriptbus.events import decode_event, publish_event
from scriptbus.events.tokens import Role, TokenCreated, token_digest
from scriptbus.gateway.token_table import TokenTable
from tests.helpers.api import wait_until_ready
from tests.helpers.executor import request_run
from tests.helpers.gateway import Api
from tests.helpers.processes import StartService
from tests.helpers.servers import Bus
from tests.helpers.tokens import bearer, make_token
from tests.helpers.waiting import eventually

QUEUED = {"script": "echo hi", "pool": "nobody"}  # no executor serves `nobody`: runs stay queued


async def _stored(api: Api) -> list[tuple[str, bytes]]:
    """Every message of the events stream: (subject, payload)."""
    found: list[tuple[str, bytes]] = []
    seq = 1
    while True:
        try:
            msg = await api.js.get_msg(api.subjects.events_stream, seq=seq, next=True)
        except nats.js.errors.NotFoundError:
            return found
        found.append((msg.subject or "", msg.data or b""))
        seq = (msg.seq or 0) + 1


async def _events(api: Api, kind: str) -> list[dict[str, Any]]:
    events = []
    for subject, data in await _stored(api):
        event = None if subject.endswith(".out") else decode_event(data)
        if event is not None and event.type == kind:
            events.append(event.model_dump(mode="json"))
    return events


@contextlib.asynccontextmanager
async def _second_gateway(start_service: StartService, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another gateway on the same stream and database, ready."""
    port = free_port()
    start_service("gateway", "--port", str(port), env=env)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        await wait_until_ready(client)
        yield client


async def test_each_role_gets_what_it_may_and_a_403_naming_the_role_for_the_rest(api: Api) -> None:
    c = api.client
    admin = (await make_token(c, "admin", "ops"))["token"]
    # From the first token on, nobody is anonymous any more, even on loopback.
    refused = await c.get("/api/v1/runs")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    read = (await make_token(c, "read", "auditor", admin))["token"]
    run = (await make_token(c, "run", "ci", admin))["token"]
    command = await c.post("/api/v1/commands", json={"name": "hello", "script": "echo hi"}, headers=bearer(admin))
    assert command.status_code == 201, command.text
    queued = await c.post("/api/v1/runs", json=QUEUED, headers=bearer(run))
    assert queued.status_code == 202, queued.text
    run_id = queued.json()["id"]
    seed = {
        "context": {
            "project": {
                "name": "p1",
                "workflows": [{"name": "w1", "tasks": [{"name": "t1", "place": 1, "function": "true"}]}],
            }
        }
    }
    imported = await c.post("/api/v1/projects/import", json=seed, headers=bearer(admin))
    assert imported.status_code == 201, imported.text

    writes: list[tuple[str, str, dict[str, Any] | None, str]] = [
        ("POST", "/api/v1/runs", QUEUED, "run"),
        ("POST", f"/api/v1/runs/{run_id}/stop", None, "run"),
        ("DELETE", f"/api/v1/runs/{run_id}", None, "admin"),
        ("POST", "/api/v1/commands/hello/runs", {}, "run"),
        ("POST", "/api/v1/commands", {"name": "other", "script": "true"}, "admin"),
        ("PUT", "/api/v1/commands/hello", {"name": "hello", "script": "echo bye"}, "admin"),
        ("DELETE", "/api/v1/commands/hello", None, "admin"),
        ("POST", "/api/v1/projects/import", seed, "admin"),
        (
            "PUT",
            "/api/v1/projects/p1/workflows/w2",
            {"tasks": [{"name": "t1", "place": 1, "function": "true"}]},
            "admin",
        ),
        ("DELETE", "/api/v1/projects/p1/workflows/w1", None, "admin"),
        ("POST", "/api/v1/projects/p1/workflows/w1/runs", {}, "run"),
        ("POST", f"/api/v1/workflow-runs/{uuid.uuid4()}/stop", None, "run"),
        ("POST", "/api/v1/tokens", {"role": "read", "name": "x"}, "admin"),
        ("GET", "/api/v1/tokens", None, "admin"),
    ]
    before = await api.stored_messages()
    for token, role in ((read, "read"), (run, "run")):
        for method, path, body, needed in writes:
            if needed == "run" and role == "run":
                continue
            response = await c.request(method, path, json=body, headers=bearer(token))
            assert response.status_code == 403, (role, method, path, response.text)
            assert response.json()["detail"] == f"this needs the {needed!r} role; the token has {role!r}"
    # Refused means nothing happened.
    assert await api.stored_messages() == before
    for path in ("/api/v1/runs", f"/api/v1/runs/{run_id}", "/api/v1/commands/hello", "/api/v1/executors"):
        assert (await c.get(path, headers=bearer(read))).status_code == 200, path
    assert (await c.get("/api/v1/projects/p1/export", headers=bearer(read))).status_code == 200

    # What `run` may do, it does; the rest stays with admin.
    assert (
        await c.post("/api/v1/commands/hello/runs", json={"pool": "nobody"}, headers=bearer(run))
    ).status_code == 202
    stopped = await c.post(f"/api/v1/runs/{run_id}/stop", headers=bearer(run))
    assert stopped.status_code == 202 and stopped.json()["status"] == "cancelled", stopped.text
    assert (await c.delete(f"/api/v1/runs/{run_id}", headers=bearer(admin))).status_code == 204


async def test_a_revoked_token_is_refused_at_once_here_and_soon_on_every_gateway(
    api: Api, start_service: StartService
) -> None:
    c = api.client
    admin = (await make_token(c, "admin", "ops"))["token"]
    made = await make_token(c, "run", "ci", admin)
    async with _second_gateway(start_service) as other:
        # The other gateway learns of new tokens from the stream too.
        async def accepted_there() -> bool:
            return (await other.get("/api/v1/runs", headers=bearer(made["token"]))).status_code == 200

        await eventually(accepted_there, 10, what="the token accepted by the second gateway")
        assert (await c.get("/api/v1/runs", headers=bearer(made["token"]))).status_code == 200

        assert (await c.delete(f"/api/v1/tokens/{made['id']}", headers=bearer(admin))).status_code == 204
        refused = await c.get("/api/v1/runs", headers=bearer(made["token"]))
        assert refused.status_code == 401, refused.text

        async def refused_there() -> bool:
            return (await other.get("/api/v1/runs", headers=bearer(made["token"]))).status_code == 401

        await eventually(refused_there, 10, what="the revoked token refused by the second gateway")

    # Revoking again changes nothing; an unknown id is a 404, a malformed one a 422 naming it.
    assert (await c.delete(f"/api/v1/tokens/{made['id']}", headers=bearer(admin))).status_code == 204
    assert (await c.delete(f"/api/v1/tokens/{uuid.uuid4()}", headers=bearer(admin))).status_code == 404
    bad = await c.delete("/api/v1/tokens/nope", headers=bearer(admin))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "token_id"]

    live = (await c.get("/api/v1/tokens", headers=bearer(admin))).json()["items"]
    assert [(t["name"], t["role"], t["created_by"]) for t in live] == [("ops", "admin", "local")]
    everything = (await c.get("/api/v1/tokens", params={"revoked": "true"}, headers=bearer(admin))).json()["items"]
    ci = next(t for t in everything if t["id"] == made["id"])
    assert ci["revoked_by"] == "ops" and ci["revoked_at"] is not None
    assert set(ci) == {"id", "role", "name", "created_at", "created_by", "revoked_at", "revoked_by"}
    # The token itself is nowhere but in the answer that made it: not in the stream, not in the listing.
    stream = b"".join(data for _, data in await _stored(api))
    for token in (admin, made["token"]):
        assert token.encode() not in stream
        assert token not in str(everything)


async def test_no_lockout_without_configured_tokens(api: Api) -> None:
    c = api.client
    first = await c.post("/api/v1/tokens", json={"role": "run", "name": "ci"})
    assert first.status_code == 409 and "create an admin token first" in first.json()["detail"]
    admin = await make_token(c, "admin", "ops")
    ci = await make_token(c, "run", "ci", admin["token"])
    taken = await c.post("/api/v1/tokens", json={"role": "read", "name": "ci"}, headers=bearer(admin["token"]))
    assert taken.status_code == 409 and "'ci'" in taken.json()["detail"]
    last = await c.delete(f"/api/v1/tokens/{admin['id']}", headers=bearer(admin["token"]))
    assert last.status_code == 409 and "last admin token" in last.json()["detail"]
    for made in (ci, admin):
        assert (await c.delete(f"/api/v1/tokens/{made['id']}", headers=bearer(admin["token"]))).status_code == 204
    # With no live token left, this machine's single user is back to needing none.
    assert (await c.get("/api/v1/runs")).status_code == 200
    invalid = await c.post("/api/v1/tokens", json={"role": "boss", "name": "a b"})
    assert invalid.status_code == 422
    assert {tuple(e["loc"]) for e in invalid.json()["detail"]} == {("body", "role"), ("body", "name")}


async def test_idempotency_keys_are_per_token(api: Api) -> None:
    c = api.client
    admin = (await make_token(c, "admin", "ops"))["token"]
    first, second = [(await make_token(c, "run", name, admin))["token"] for name in ("ci", "cd")]
    key = {"Idempotency-Key": "deploy-42"}
    a = await c.post("/api/v1/runs", json=QUEUED, headers={**bearer(first), **key})
    replay = await c.post("/api/v1/runs", json=QUEUED, headers={**bearer(first), **key})
    b = await c.post("/api/v1/runs", json=QUEUED, headers={**bearer(second), **key})
    assert a.status_code == replay.status_code == b.status_code == 202
    assert replay.json()["id"] == a.json()["id"] and replay.headers.get("idempotent-replayed") == "true"
    # Another token's key is its own: a new run, not the first caller's.
    assert b.json()["id"] != a.json()["id"] and "idempotent-replayed" not in b.headers
    assert b.json()["requested_by"] == "cd"
    assert len(await _events(api, "run.requested")) == 2


async def test_the_callers_name_is_in_the_events_they_cause_and_on_the_run(api: Api) -> None:
    c = api.client
    admin = (await make_token(c, "admin", "ops"))["token"]
    ci = (await make_token(c, "run", "ci", admin))["token"]
    created = await c.post("/api/v1/runs", json=QUEUED, headers=bearer(ci))
    assert created.status_code == 202 and created.json()["requested_by"] == "ci"
    run_id = created.json()["id"]
    got = (await c.get(f"/api/v1/runs/{run_id}", headers=bearer(admin))).json()
    assert (got["requested_by"], got["stopped_by"]) == ("ci", "")
    stopped = await c.post(f"/api/v1/runs/{run_id}/stop", headers=bearer(admin))
    assert stopped.json()["stopped_by"] == "ops"
    listed = (await c.get("/api/v1/runs", headers=bearer(ci))).json()["items"]
    assert [(r["requested_by"], r["stopped_by"]) for r in listed] == [("ci", "ops")]
    assert [e["requested_by"] for e in await _events(api, "run.requested")] == ["ci"]
    assert [e["stopped_by"] for e in await _events(api, "run.finished")] == ["ops"]

    assert (await c.post("/api/v1/commands", json={"name": "h", "script": "true"}, headers=bearer(admin))).is_success
    assert (await c.delete("/api/v1/commands/h", headers=bearer(admin))).status_code == 204
    assert [e["created_by"] for e in await _events(api, "command.created")] == ["ops"]
    assert [e["deleted_by"] for e in await _events(api, "command.deleted")] == ["ops"]
    assert [(e["name"], e["created_by"]) for e in await _events(api, "token.created")] == [
        ("ops", "local"),
        ("ci", "ops"),
    ]


async def test_only_an_admin_may_choose_path_for_a_run(api: Api) -> None:
    c = api.client
    admin = (await make_token(c, "admin", "ops"))["token"]
    ci = (await make_token(c, "run", "ci", admin))["token"]
    with_path = {**QUEUED, "env": {"PATH": "/tmp/evil:/usr/bin"}}
    refused = await c.post("/api/v1/runs", json=with_path, headers=bearer(ci))
    assert refused.status_code == 403, refused.text
    assert "PATH" in refused.text and "admin" in refused.text
    assert (await c.get("/api/v1/runs", headers=bearer(ci))).json()["items"] == []
    allowed = await c.post("/api/v1/runs", json=with_path, headers=bearer(admin))
    assert allowed.status_code == 202, allowed.text
    assert allowed.json()["env"]["PATH"] == "/tmp/evil:/usr/bin"


async def test_docs_load_nothing_from_elsewhere(api: Api) -> None:
    page = await api.client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "http://" not in html and "https://" not in html and "//" not in html.replace("<!--", "")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"url: '([^']+)'", html)
    assert len(urls) >= 4, urls  # the script, the stylesheet, the icon, the schema
    for url in urls:
        assert url.startswith("/"), url
        response = await api.client.get(url)
        assert response.status_code == 200 and response.content, url
    assert "SwaggerUIBundle" in (await api.client.get("/docs/assets/swagger-ui-bundle.js")).text
    assert (await api.client.get("/docs/assets/index.html")).status_code == 404


async def test_docs_and_schema_need_a_token_when_tokens_are_required(api: Api, start_service: StartService) -> None:
    async with _second_gateway(start_service, SCRIPTBUS_API_TOKENS="s3cret") as guarded:
        for path in ("/docs", "/openapi.json"):
            for headers in ({}, bearer("wrong")):
                response = await guarded.get(path, headers=headers)
                assert response.status_code == 401, (path, response.text)
                assert "Authorization: Bearer" in response.json()["detail"]
        schema = await guarded.get("/openapi.json", headers=bearer("s3cret"))
        assert schema.status_code == 200 and "/api/v1/tokens" in schema.json()["paths"]
        assert (await guarded.get("/docs", headers=bearer("s3cret"))).status_code == 200
        # The UI's own files hold nothing about this installation.
        assert (await guarded.get("/docs/assets/swagger-ui.css")).status_code == 200


async def test_revocation_reaches_a_gateway_that_rode_out_a_nats_restart(
    start_service: StartService, tmp_path: Path
) -> None:
    nats_server = EmbeddedNats(tmp_path / "own-nats")
    nats_server.start()
    try:
        env = {"SCRIPTBUS_NATS_URL": nats_server.url}
        start_service("recorder", env=env)
        async with _second_gateway(start_service, **env) as first, _second_gateway(start_service, **env) as second:
            admin = (await make_token(first, "admin", "ops"))["token"]
            made = await make_token(first, "run", "ci", admin)

            nats_server.stop()
            nats_server.start()
            for client in (first, second):
                await wait_until_ready(client)

            async def revoked() -> bool:
                response = await second.delete(f"/api/v1/tokens/{made['id']}", headers=bearer(admin))
                return response.status_code == 204

            await eventually(revoked, 30, interval=0.2, what="the token revoked through the second gateway")

            async def refused_by_the_first() -> bool:
                return (await first.get("/api/v1/runs", headers=bearer(made["token"]))).status_code == 401

            await eventually(refused_by_the_first, 30, interval=0.2, what="the first gateway refusing the token")
    finally:
        nats_server.stop()


async def test_no_other_web_site_drives_the_api_through_a_browser(api: Api) -> None:
    c = api.client
    # A form on another site POSTing an empty body would run a saved command on a token-less loopback gateway.
    saved = await c.post("/api/v1/commands", json={"name": "deploy", "script": "echo deployed"})
    assert saved.status_code == 201, saved.text
    for forged in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
    ):
        refused = await c.post("/api/v1/commands/deploy/runs", headers=forged)
        assert refused.status_code == 403 and "another web site" in refused.json()["detail"], (forged, refused.text)
    # A page whose name was rebound to 127.0.0.1 is same-origin to the browser, but names itself as Host.
    rebound = await c.get("/api/v1/runs", headers={"Host": "evil.example:8080"})
    assert rebound.status_code == 403 and "loopback name" in rebound.json()["detail"]
    assert (await c.get("/api/v1/runs?command_id=deploy")).json()["items"] == []
    # The console itself (same origin), a typed URL and programs without these headers go through.
    own_origin = {"Origin": str(c.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    for ok in (own_origin, {"Origin": str(c.base_url).rstrip("/")}, {}):
        started = await c.post("/api/v1/commands/deploy/runs", json={"pool": "nobody"}, headers=ok)
        assert started.status_code == 202, (ok, started.text)


async def test_the_gateways_token_table_reads_token_events_only(bus: Bus) -> None:
    # Every gateway folds the token events; it must not be sent every run event and output chunk as well.
    _nc, js, s = bus
    table = TokenTable()
    await table.follow(js, s)
    try:
        token = TokenCreated(token_id=str(uuid.uuid4()), digest=token_digest("sb_x"), role=Role.read, name="x")
        token_seq = (await publish_event(js, s, token)).seq
        run = await request_run(js, s, "true")
        await js.publish(s.run_output(run.run_id), b"output", headers={"Nats-Msg-Id": run.run_id + ":0"})
        await eventually(lambda: table.find("sb_x") is not None, 10, what="the token folded")
        await asyncio.sleep(0.5)  # time for anything else to arrive
        assert table.position == token_seq
    finally:
        await table.close()
