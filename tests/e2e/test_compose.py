"""The compose deployment in real containers: `docker-compose.yml` built from this tree and brought up, an
executor from `deploy/executor/` added as a second machine with its own credential, a script run on
each by host, and everything kept across `docker compose down` and `up`.

Runs when a Docker engine answers (DOCKER_HOST or the default socket) and has the compose plugin;
skipped at once otherwise. It needs the images the compose files name (python:3.11-slim, nats:2.10-alpine,
postgres:16-alpine) in the engine or pullable."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.api import TERMINAL, start_run, wait_for_status, wait_until_ready
from tests.helpers.compose import ComposeStack, ExtraExecutor, compose_stack, compose_unavailable, extra_executor
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.timeout(600)

EXTRA_HOST = "e2e-build-1"
# What a script may see of the executor that runs it: its own identity, not the executor's credentials,
# secrets key or environment (pid 1 is the container's init, with the executor's environment).
PROBE = r"""
echo "on $(hostname) as $(id -un) secret=${E2E_SECRET:-unset}"
for f in /scriptbus/credentials/nats-executor-compose-executor.nk /scriptbus/secrets/secrets.key \
         /run/secrets/executor.nk /run/secrets/secrets.key /proc/1/environ; do
  if cat "$f" >/dev/null 2>&1; then echo "readable: $f"; fi
done
"""


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[ComposeStack, ExtraExecutor]]:
    reason = compose_unavailable()
    if reason:
        pytest.skip(reason)
    with compose_stack(tmp_path) as stack, extra_executor(stack, EXTRA_HOST, "linux") as extra:
        yield stack, extra


def api(stack: ComposeStack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {stack.api_token}"})


async def online_hosts(client: httpx.AsyncClient, wanted: set[str]) -> set[str]:
    response = await client.get("/api/v1/executors")
    assert response.status_code == 200, response.text
    online = {e["host"] for e in response.json()["items"] if e["state"] == "online"}
    assert wanted <= online, online
    return online


async def output_of(client: httpx.AsyncClient, run_id: str, expected: str) -> str:
    response = await client.get(f"/api/v1/runs/{run_id}/output")
    assert response.status_code == 200, response.text
    assert response.text == expected, response.text
    return response.text


async def run_on(client: httpx.AsyncClient, host: str) -> dict[str, Any]:
    run = await start_run(client, PROBE, host=host, secrets=["E2E_SECRET"])
    return await wait_for_status(client, run["id"], TERMINAL, timeout=60)


async def test_compose_stack_runs_scripts_on_two_executor_machines_and_keeps_them_across_down_up(
    deployment: tuple[ComposeStack, ExtraExecutor],
) -> None:
    stack, extra = deployment
    hosts = {"compose-executor", EXTRA_HOST}
    async with api(stack) as client:
        await wait_until_ready(client, timeout=120)
        await eventually(lambda: online_hosts(client, hosts), 60, interval=0.5, what="both executors online")
        # Sealed by the gateway's public key, opened by each executor's copy of the private key.
        put = await client.put("/api/v1/secrets/E2E_SECRET", json={"value": "s3cr3t"})
        assert put.status_code == 201, put.text

        finished = {host: await run_on(client, host) for host in hosts}
        for host, run in finished.items():
            assert (run["status"], run["host"], run["exit_code"]) == ("succeeded", host, 0), run
            # The value is masked in output; no credential, key or executor environment is readable.
            expected = f"on {host} as scriptbus-run secret=***\n"
            await eventually(partial(output_of, client, run["id"], expected), 30, what=f"output on {host}")
        listed = await client.get("/api/v1/runs", params={"host": EXTRA_HOST})
        assert [r["id"] for r in listed.json()["items"]] == [finished[EXTRA_HOST]["id"]], listed.text

        # The executor's container dies with a run in it; its replacement finds the run in the journal on
        # its runs volume and ends it at once, rather than leaving it to the scheduler's silence timeout.
        held = await start_run(client, "echo started; sleep 600", host="compose-executor")
        await wait_for_status(client, held["id"], "running")
        stack.compose("kill", "-s", "KILL", "executor")
        stack.compose("up", "-d", "--no-deps", "--force-recreate", "executor")  # a new container
        lost = await wait_for_status(client, held["id"], "lost", timeout=60)
        assert "reaped after the executor restarted" in lost["reason"], lost

    # `down` keeps the volumes: runs, their output, credentials and secrets are all there after `up`.
    stack.down(volumes=False)
    stack.up()
    async with api(stack) as client:
        await wait_until_ready(client, timeout=120)
        for host, run in finished.items():
            again = await client.get(f"/api/v1/runs/{run['id']}")
            assert again.status_code == 200 and again.json()["status"] == "succeeded", again.text
            await output_of(client, run["id"], f"on {host} as scriptbus-run secret=***\n")
        await eventually(lambda: online_hosts(client, hosts), 60, interval=0.5, what="both executors back")
        rerun = await run_on(client, EXTRA_HOST)
        assert rerun["status"] == "succeeded", rerun
        await eventually(lambda: output_of(client, rerun["id"], f"on {EXTRA_HOST} as scriptbus-run secret=***\n"), 30)
