"""The whole system as real processes: recorder, scheduler, executors and gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from scriptbus.embedded import free_port
from tests.helpers.api import wait_until_ready
from tests.helpers.processes import ServiceProcess


@dataclass
class Stack:
    api: str
    client: httpx.AsyncClient
    services: dict[str, ServiceProcess]
    start_service: Callable[..., ServiceProcess]
    executors: list[ServiceProcess] = field(default_factory=list)

    def add_executor(self, *args: str) -> ServiceProcess:
        executor = self.start_service("executor", *args)
        self.executors.append(executor)
        return executor


@pytest.fixture
async def make_stack(
    start_service: Callable[..., ServiceProcess],
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    clients: list[httpx.AsyncClient] = []

    async def make(executors: list[list[str]] | None = None) -> Stack:
        port = free_port()
        services = {
            "recorder": start_service("recorder"),
            "scheduler": start_service("scheduler"),
            "gateway": start_service("gateway", "--port", str(port)),
        }
        api = f"http://127.0.0.1:{port}"
        client = httpx.AsyncClient(base_url=api, timeout=30)
        clients.append(client)
        stack = Stack(api, client, services, start_service)
        for args in [["--host", "local"]] if executors is None else executors:
            stack.add_executor(*args)
        await wait_until_ready(client)
        return stack

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def stack(make_stack: Callable[..., Awaitable[Stack]]) -> Stack:
    return await make_stack()
