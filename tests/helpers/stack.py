"""The whole system as real processes: recorder, scheduler, executors and a gateway on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import httpx

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


class MakeStack(Protocol):
    """The `make_stack` fixture: one more stack, stopped with the test."""

    async def __call__(self, executors: Sequence[Sequence[str]] = ...) -> Stack: ...


@asynccontextmanager
async def running_stack(
    start_service: Callable[..., ServiceProcess],
    executors: Sequence[Sequence[str]] = (("--host", "local"),),
    gateway_env: Mapping[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """A ready stack (the gateway answers /readyz); the processes stop with the test's `start_service`.
    `gateway_env` adds to the gateway's environment (e.g. `SCRIPTBUS_API_TOKENS`)."""
    port = free_port()
    services = {
        "recorder": start_service("recorder"),
        "scheduler": start_service("scheduler"),
        "gateway": start_service("gateway", "--port", str(port), env=dict(gateway_env or {})),
    }
    api = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        stack = Stack(api, client, services, start_service)
        for args in executors:
            stack.add_executor(*args)
        await wait_until_ready(client)
        yield stack
