"""The fleet and the metrics, with real executors: `/executors` shows them online, stopped, and lost
once a SIGKILLed one has been silent past the timeout; `/metrics` counts runs (and keeps counting
deleted ones) and reports the fleet and the queues."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scriptbus.embedded import free_port
from tests.helpers.api import wait_for_status, wait_until_ready
from tests.helpers.gateway import Api, create
from tests.helpers.processes import ServiceProcess
from tests.helpers.waiting import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def executors(api: Api) -> dict[str, dict[str, Any]]:
    response = await api.client.get("/api/v1/executors")
    assert response.status_code == 200, response.text
    return {e["host"]: e for e in response.json()["items"]}


async def wait_states(api: Api, wanted: dict[str, str], timeout: float = 30) -> dict[str, dict[str, Any]]:
    async def in_states() -> dict[str, dict[str, Any]]:
        seen = await executors(api)
        assert all(host in seen and seen[host]["state"] == state for host, state in wanted.items()), seen
        return seen

    return await eventually(in_states, timeout, interval=0.1, what=f"executors {wanted}")


async def wait_metric(api: Api, name: str, expected: float, timeout: float = 20, **labels: str) -> Samples:
    async def at_expected() -> Samples:
        samples = await scrape(api.client)
        assert value(samples, name, **labels) == expected, value(samples, name, **labels)
        return samples

    return await eventually(at_expected, timeout, interval=0.1, what=f"{name}{labels} == {expected}")


async def test_executors_show_online_stopped_and_lost(api: Api, start_service: Callable[..., ServiceProcess]) -> None:
    one = start_service("executor", "--host", "fleet-one", "--label", "role=build", "--max-concurrency", "3")
    two = start_service("executor", "--host", "fleet-two", "--pool", "gpu", "--pool", "default")
    seen = await wait_states(api, {"fleet-one": "online", "fleet-two": "online"})
    first = seen["fleet-one"]
    assert first["pools"] == ["default", "fleet-one"] and first["labels"] == {"role": "build"}
    assert first["capacity"] == 3 and first["running"] == 0 and first["version"]
    assert first["executor_id"] and first["started_at"] and first["last_heartbeat"]
    assert seen["fleet-two"]["pools"] == ["gpu", "default", "fleet-two"]
    assert [e["host"] for e in (await api.client.get("/api/v1/executors")).json()["items"]] == [
        "fleet-one",
        "fleet-two",
    ]

    # A running run shows on its executor.
    busy = await create(api, script="sleep 30", host="fleet-one")
    await wait_for_status(api.client, busy["id"], "running")

    async def one_running() -> bool:
        seen = await executors(api)
        assert seen["fleet-one"]["running"] == 1, seen
        return True

    await eventually(one_running, 20, interval=0.1, what="fleet-one running 1")
    assert (await api.client.post(f"/api/v1/runs/{busy['id']}/stop")).status_code == 202

    # SIGKILL: no goodbye, only silence; lost once SCRIPTBUS_EXECUTOR_LOST_AFTER_S (3 s here) has passed.
    two.kill()
    killed_at = time.monotonic()
    seen = await wait_states(api, {"fleet-two": "lost", "fleet-one": "online"})
    assert time.monotonic() - killed_at >= 2.0, "lost only after the timeout, not at once"
    samples = await wait_metric(api, "scriptbus_executors", 1, state="lost")
    assert value(samples, "scriptbus_executors", state="online") == 1
    assert value(samples, "scriptbus_executor_capacity", host="fleet-one") == 3
    assert value(samples, "scriptbus_executor_capacity", host="fleet-two") is None

    # SIGTERM: the executor says goodbye and is `stopped`.
    one.terminate()
    assert one.wait(30) == 0
    await wait_states(api, {"fleet-one": "stopped", "fleet-two": "lost"})
    samples = await scrape(api.client)
    assert value(samples, "scriptbus_executors", state="stopped") == 1
    assert value(samples, "scriptbus_executors", state="online") == 0


async def test_metrics_count_runs_and_survive_deletes(api: Api, start_service: Callable[..., ServiceProcess]) -> None:
    start_service("executor", "--host", "metrics-host")
    await wait_states(api, {"metrics-host": "online"})
    samples = await scrape(api.client)
    assert value(samples, "scriptbus_runs_finished_total", status="succeeded") in (None, 0)
    assert {value(samples, "scriptbus_runs_active", status=s) for s in ("queued", "running", "stopping")} == {0}

    run = await create(api, script="echo metrics; sleep 0.2")
    await wait_for_status(api.client, run["id"], "succeeded")
    samples = await wait_metric(api, "scriptbus_runs_finished_total", 1, status="succeeded")
    assert value(samples, "scriptbus_runs_requested_total", pool="default") == 1
    assert value(samples, "scriptbus_runs_started_total", host="metrics-host") == 1
    assert value(samples, "scriptbus_output_bytes_total") == len(b"metrics\n")
    assert value(samples, "scriptbus_run_duration_seconds_count") == 1
    assert value(samples, "scriptbus_run_duration_seconds_bucket", le="0.1") == 0
    assert value(samples, "scriptbus_run_duration_seconds_bucket", le="60.0") == 1
    assert value(samples, "scriptbus_run_duration_seconds_bucket", le="+Inf") == 1
    assert 0.2 <= (value(samples, "scriptbus_run_duration_seconds_sum") or 0) < 60
    les = sorted(
        float(dict(labels)["le"]) for name, labels in samples if name == "scriptbus_run_duration_seconds_bucket"
    )
    assert les == [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf")]
    assert value(samples, "scriptbus_executors", state="online") == 1
    # The executor's load comes with its heartbeats: the one after the run ended says it runs nothing.
    samples = await wait_metric(api, "scriptbus_executor_running", 0, host="metrics-host")
    lag = value(samples, "scriptbus_recorder_lag_messages")
    assert lag is not None and lag >= 0

    # Gauges follow what is queued now, per pool or host.
    for _ in range(2):
        await create(api, pool="gpu")
    await create(api, host="elsewhere")
    samples = await scrape(api.client)
    assert value(samples, "scriptbus_queue_depth", target="gpu") == 2
    assert value(samples, "scriptbus_queue_depth", target="elsewhere") == 1
    assert value(samples, "scriptbus_runs_active", status="queued") == 3

    # Counters do not go down when runs are deleted.
    assert (await api.client.delete(f"/api/v1/runs/{run['id']}")).status_code == 204
    samples = await scrape(api.client)
    assert value(samples, "scriptbus_runs_finished_total", status="succeeded") == 1
    assert value(samples, "scriptbus_output_bytes_total") == len(b"metrics\n")
    # By pool: the run for host `elsewhere` is in pool default too.
    assert value(samples, "scriptbus_runs_requested_total", pool="default") == 2
    assert value(samples, "scriptbus_runs_requested_total", pool="gpu") == 2


def outward_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel only picks a route
        except OSError:
            return None
        address: str = sock.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_metrics_need_a_token_only_from_elsewhere(start_service: Callable[..., ServiceProcess]) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    start_service("recorder")
    port = free_port()
    start_service("gateway", "--host", "0.0.0.0", "--port", str(port), env={"SCRIPTBUS_API_TOKENS": "s3cret"})
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as local,
        httpx.AsyncClient(base_url=f"http://{address}:{port}", timeout=30) as remote,
    ):
        await wait_until_ready(local)
        assert (await local.get("/metrics")).status_code == 200
        assert (await local.get("/api/v1/executors")).status_code == 401
        assert (await remote.get("/metrics")).status_code == 401
        authorized = await remote.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert authorized.status_code == 200 and "scriptbus_runs_active" in authorized.text
