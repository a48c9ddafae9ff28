"""Driving a running stack over HTTP the way a user would."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

TERMINAL = {"succeeded", "failed", "terminated", "stopped", "killed", "timed_out", "cancelled", "lost"}


async def wait_for_status(
    client: httpx.AsyncClient, run_id: str, statuses: set[str] | str, timeout: float = 30.0
) -> dict[str, Any]:
    wanted = {statuses} if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/runs/{run_id}")
        if response.status_code == 200:
            run = response.json()
            if run["status"] in wanted:
                return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} not {wanted} after {timeout}s; last seen: {run}")


async def wait_until_ready(client: httpx.AsyncClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = await client.get("/readyz")
            if response.status_code == 200:
                return
            last = response.text
        except httpx.TransportError as exc:
            last = repr(exc)
        await asyncio.sleep(0.1)
    raise AssertionError(f"gateway not ready after {timeout}s: {last}")


async def start_run(client: httpx.AsyncClient, script: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/runs", json={"script": script, **fields})
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run
