"""Driving a running stack over HTTP the way a user would."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers.waiting import eventually

TERMINAL = {"succeeded", "failed", "terminated", "stopped", "killed", "timed_out", "cancelled", "lost"}


async def wait_for_status(
    client: httpx.AsyncClient, run_id: str, statuses: set[str] | str, timeout: float = 30.0
) -> dict[str, Any]:
    wanted = {statuses} if isinstance(statuses, str) else statuses

    async def in_wanted_status() -> dict[str, Any]:
        response = await client.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        assert run["status"] in wanted, f"last seen: {run}"
        return run

    return await eventually(in_wanted_status, timeout, what=f"run {run_id} {wanted}")


async def wait_until_ready(client: httpx.AsyncClient, timeout: float = 60.0) -> None:
    async def ready() -> bool:
        try:
            response = await client.get("/readyz")
        except httpx.TransportError as exc:
            raise AssertionError(repr(exc)) from exc
        assert response.status_code == 200, response.text
        return True

    await eventually(ready, timeout, interval=0.1, what="gateway ready")


async def start_run(client: httpx.AsyncClient, script: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/runs", json={"script": script, **fields})
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run
