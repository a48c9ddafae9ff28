"""The console's cookie: who it makes a caller, when an unsafe request carried by it is refused (CSRF),
and how sign-in sets it and sign-out clears it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from scriptbus.gateway.app import create_app
from scriptbus.gateway.auth import CONSOLE_COOKIE, Reader, Runner
from scriptbus.gateway.settings import GatewaySettings

TOKEN = "sb_admin-token"
CONSOLE = {"X-Scriptbus-Console": "1"}


def _settings(tokens: str = TOKEN) -> GatewaySettings:
    return GatewaySettings().model_copy(update={"host": "127.0.0.1", "api_tokens": tokens})


def _probe_app(settings: GatewaySettings) -> FastAPI:
    """Two routes guarded as the API's are: a read (GET) and a run (POST)."""
    app = FastAPI()
    app.state.settings = settings

    @app.get("/probe")
    async def read(caller: Reader) -> dict[str, str]:
        return {"name": caller.name}

    @app.post("/probe")
    async def act(caller: Runner) -> dict[str, str]:
        return {"name": caller.name}

    return app


@pytest.fixture
async def probe() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_probe_app(_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


async def test_the_cookie_authenticates_a_get(probe: httpx.AsyncClient) -> None:
    assert (await probe.get("/probe")).status_code == 401
    probe.cookies.set(CONSOLE_COOKIE, TOKEN)
    response = await probe.get("/probe")
    assert response.status_code == 200 and response.json() == {"name": "admin"}


async def test_a_cookie_borne_post_needs_the_console_header(probe: httpx.AsyncClient) -> None:
    probe.cookies.set(CONSOLE_COOKIE, TOKEN)
    refused = await probe.post("/probe")
    assert refused.status_code == 403 and "x-scriptbus-console" in refused.json()["detail"]
    assert (await probe.post("/probe", headers={"X-Scriptbus-Console": "yes"})).status_code == 403
    assert (await probe.post("/probe", headers=CONSOLE)).status_code == 200


async def test_a_bearer_caller_needs_no_console_header_even_with_a_cookie(probe: httpx.AsyncClient) -> None:
    probe.cookies.set(CONSOLE_COOKIE, "stale-or-forged")
    response = await probe.post("/probe", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


async def test_an_invalid_cookie_is_a_401(probe: httpx.AsyncClient) -> None:
    probe.cookies.set(CONSOLE_COOKIE, "not-a-token")
    assert (await probe.get("/probe")).status_code == 401
    assert (await probe.post("/probe", headers=CONSOLE)).status_code == 401


async def _console(settings: GatewaySettings, base_url: str) -> httpx.AsyncClient:
    # No lifespan: the sign-in routes need only the settings (no token table without NATS).
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url=base_url)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_sign_in_sets_a_strict_httponly_cookie_and_sign_out_clears_it(scheme: str) -> None:
    async with await _console(_settings(), f"{scheme}://127.0.0.1") as client:
        response = await client.post("/console/session", json={"token": TOKEN}, headers=CONSOLE)
        assert response.status_code == 200, response.text
        assert response.json() == {"name": "admin", "role": "admin", "anonymous": False}
        cookie = response.headers["set-cookie"]
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert cookie.startswith(f"{CONSOLE_COOKIE}={TOKEN};")
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert ("secure" in attributes) == (scheme == "https")
        whoami = await client.get("/console/whoami")
        assert whoami.status_code == 200 and whoami.json()["name"] == "admin"

        gone = await client.delete("/console/session", headers=CONSOLE)
        assert gone.status_code == 204 and f"{CONSOLE_COOKIE}=" in gone.headers["set-cookie"]
        assert (await client.get("/console/whoami")).status_code == 401


async def test_sign_in_refuses_a_bad_token_a_missing_header_and_a_form() -> None:
    async with await _console(_settings(), "http://127.0.0.1") as client:
        wrong = await client.post("/console/session", json={"token": "nope"}, headers=CONSOLE)
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        # A cross-site form can send neither the header nor JSON.
        forged = await client.post("/console/session", json={"token": TOKEN})
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
        form = await client.post("/console/session", data={"token": TOKEN}, headers=CONSOLE)
        assert form.status_code == 415
        odd = await client.post("/console/session", json={"token": "a;b"}, headers=CONSOLE)
        assert odd.status_code == 422


async def test_on_loopback_without_tokens_the_console_is_anonymous() -> None:
    async with await _console(_settings(tokens=""), "http://127.0.0.1") as client:
        whoami = await client.get("/console/whoami")
        assert whoami.json() == {"name": "local", "role": "admin", "anonymous": True}


async def test_the_page_and_its_modules_are_served_and_nothing_outside_them() -> None:
    async with await _console(_settings(), "http://127.0.0.1") as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        module = await client.get("/console/static/pages/run.js")
        assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
        for path in ["/console/static/../routes.py", "/console/static/%2e%2e/routes.py", "/console/static/nope.js"]:
            assert (await client.get(path)).status_code == 404, path
