"""Fan-outs over HTTP, and a stack of three executors on different host names to fan out over."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx

from tests.helpers.waiting import eventually

HOSTS = ("fo-a", "fo-b", "fo-c")
# Three executors, each its own host; fo-a and fo-b are `role=web`, fo-c `role=db`.
EXECUTORS = [
    ("--host", "fo-a", "--label", "role=web"),
    ("--host", "fo-b", "--label", "role=web"),
    ("--host", "fo-c", "--label", "role=db"),
]


async def fleet_online(client: httpx.AsyncClient, hosts: tuple[str, ...] = HOSTS) -> None:
    """Wait until the gateway sees every host of `hosts` online (a fan-out matches only live ones)."""

    async def online() -> bool:
        response = await client.get("/api/v1/executors")
        assert response.status_code == 200, response.text
        states = {e["host"]: e["state"] for e in response.json()["items"]}
        # Asserted, so a timeout names the hosts that never came online.
        assert all(states.get(h) == "online" for h in hosts), states
        return True

    await eventually(online, 60, interval=0.2, what=f"executors {hosts} online")


async def start_fanout(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/fanouts", json=body)
    assert response.status_code == 202, response.text
    fanout: dict[str, Any] = response.json()
    return fanout


async def get_fanout(client: httpx.AsyncClient, fanout_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/fanouts/{fanout_id}")
    assert response.status_code == 200, response.text
    fanout: dict[str, Any] = response.json()
    return fanout


async def wait_fanout_finished(client: httpx.AsyncClient, fanout_id: str, timeout: float = 90) -> dict[str, Any]:
    """The fan-out once it has finished and every host's run shows how it ended."""

    async def finished() -> dict[str, Any]:
        fanout = await get_fanout(client, fanout_id)
        assert fanout["finished_at"] is not None, fanout["status"]
        unsettled = [r for r in fanout["runs"] if r["status"] in ("pending", "queued", "running", "stopping")]
        assert not unsettled, unsettled
        return fanout

    fanout: dict[str, Any] = await eventually(finished, timeout, interval=0.2, what=f"fan-out {fanout_id} finished")
    return fanout


def by_host(fanout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in fanout["runs"]}


async def cli(api: str, *args: str, timeout: float = 90) -> tuple[int, str, str]:
    """`scriptbus ARGS…` as a user runs it against `api`, to the end: (exit status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_") and k != "NO_COLOR"}
    env.update(SCRIPTBUS_API=api, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scriptbus",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
