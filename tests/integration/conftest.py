"""Fixtures shared by the integration tests: the gateway with its recorder, on the session's servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import nats.js.errors
import pytest

from scriptbus.embedded import free_port
from tests.helpers.api import wait_until_ready
from tests.helpers.gateway import Api
from tests.helpers.processes import StartService
from tests.helpers.servers import Bus


@pytest.fixture
async def api(start_service: StartService, bus: Bus) -> AsyncIterator[Api]:
    """The recorder and a gateway on a free port, ready (the recorder has created the tables)."""
    nc, js, subjects = bus
    recorder = start_service("recorder")
    port = free_port()
    gateway = start_service("gateway", "--port", str(port))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        await wait_until_ready(client)
        yield Api(client, gateway, recorder, nc, js, subjects)
    # The `bus` fixture removes the streams; these buckets are the gateway's to clean up.
    for bucket in (subjects.command_names_bucket, subjects.idempotency_bucket):
        try:
            await js.delete_stream(f"KV_{bucket}")
        except nats.js.errors.NotFoundError:
            pass
