"""The gateway's edges: refusing to start exposed without tokens, bearer tokens, readiness, and what a
client sees while NATS or PostgreSQL is down, and a prompt SIGTERM with a live output stream open."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from scriptbus.embedded import EmbeddedNats, free_port
from tests.helpers.api import wait_until_ready
from tests.helpers.gateway import Api, create
from tests.helpers.output import Follower
from tests.helpers.processes import ServiceProcess
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually


async def wait_http(
    client: httpx.AsyncClient, path: str, ok: Callable[[httpx.Response], bool], timeout: float = 30
) -> httpx.Response:
    async def as_expected() -> httpx.Response:
        try:
            response = await client.get(path)
        except httpx.TransportError as exc:
            raise AssertionError(repr(exc)) from exc
        assert ok(response), response.text
        return response

    return await eventually(as_expected, timeout, what=f"{path} as expected")


def start_gateway(start_service: Callable[..., ServiceProcess], *args: str, **env: str) -> tuple[ServiceProcess, str]:
    port = free_port()
    process = start_service("gateway", "--port", str(port), *args, env=env)
    return process, f"http://127.0.0.1:{port}"


async def test_refuses_to_listen_beyond_loopback_without_tokens(
    start_service: Callable[..., ServiceProcess],
) -> None:
    gateway, _ = start_gateway(start_service, "--host", "0.0.0.0")
    assert gateway.wait(30) != 0
    assert "SCRIPTBUS_API_TOKENS" in gateway.log() and "0.0.0.0" in gateway.log()


async def test_tokens_guard_every_api_route(start_service: Callable[..., ServiceProcess], bus: Bus) -> None:
    start_service("recorder")
    _, url = start_gateway(start_service, "--host", "0.0.0.0", SCRIPTBUS_API_TOKENS="alpha, beta")
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await wait_until_ready(client)
        assert (await client.get("/healthz")).status_code == 200
        for headers in ({}, {"Authorization": "Bearer gamma"}, {"Authorization": "Basic YWxwaGE="}):
            for method, path in [
                ("GET", "/api/v1/runs"),
                ("POST", "/api/v1/runs"),
                ("GET", "/api/v1/runs/x"),
            ]:
                response = await client.request(method, path, headers=headers, json={"script": "true"})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/api/v1/runs", headers={"Authorization": "Bearer beta"})).status_code == 200
        created = await client.post(
            "/api/v1/runs", headers={"Authorization": "Bearer alpha"}, json={"script": "true", "pool": "x"}
        )
        assert created.status_code == 202, created.text


async def test_readiness_follows_its_dependencies(
    start_service: Callable[..., ServiceProcess], bus: Bus, tmp_path: Path
) -> None:
    nats_server = EmbeddedNats(tmp_path / "own-nats")
    nats_server.start()
    try:
        # No recorder yet, so no tables: alive but not ready, and it says why.
        _, url = start_gateway(
            start_service, SCRIPTBUS_NATS_URL=nats_server.url, SCRIPTBUS_READ_YOUR_WRITES_TIMEOUT_S="0.3"
        )
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await wait_http(client, "/healthz", lambda r: r.status_code == 200)
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["nats"] == "ok" and "runs" in ready.json()["checks"]["postgres"]

            start_service("recorder", env={"SCRIPTBUS_NATS_URL": nats_server.url})
            await wait_until_ready(client)

            nats_server.stop()
            down = await wait_http(client, "/readyz", lambda r: r.status_code == 503)
            assert down.json()["checks"] == {"nats": "not connected", "postgres": "ok"}
            refused = await client.post("/api/v1/runs", json={"script": "true"})
            assert refused.status_code == 503 and "NATS" in refused.json()["detail"]

            nats_server.start()
            await wait_until_ready(client)
            assert (await client.post("/api/v1/runs", json={"script": "true"})).status_code == 202
    finally:
        nats_server.stop()


async def test_postgres_down_is_a_503_not_a_500(start_service: Callable[..., ServiceProcess], bus: Bus) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    gateway, url = start_gateway(start_service, SCRIPTBUS_DATABASE_URL=nowhere)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await wait_http(client, "/healthz", lambda r: r.status_code == 200)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["nats"] == "ok"
        assert ready.json()["checks"]["postgres"] != "ok"
        for path in ("/api/v1/runs", "/api/v1/runs/6f1c1d3e-0a59-4b8e-9a57-0c1b5a1d2b3c"):
            response = await client.get(path)
            assert response.status_code == 503, response.text
            assert "PostgreSQL" in response.json()["detail"]
    assert "Traceback" not in gateway.log()


async def test_sigterm_ends_live_streams_and_exits_promptly(api: Api) -> None:
    run = await create(api, pool="fake")
    follower = Follower(api, run["id"])
    assert await follower.opened() == 200
    started = time.monotonic()
    api.gateway.terminate()
    assert await follower.end(timeout=15) == b""
    assert api.gateway.wait(15) == 0
    assert time.monotonic() - started < 10
    assert "gateway stopped" in api.gateway.log()
