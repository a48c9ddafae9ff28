"""The connections one gateway process holds, wired at start-up and shared by every request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
from fastapi import Request
from nacl.public import PublicKey
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from scriptbus.events.secrets import secrets_bucket
from scriptbus.events.streams import (
    claims_bucket,
    command_names_bucket,
    idempotency_bucket,
    wfactive_bucket,
    wfdefs_bucket,
)
from scriptbus.events.subjects import Subjects
from scriptbus.gateway.expiring import Expiring
from scriptbus.gateway.projection import ProjectionWatcher
from scriptbus.gateway.settings import GatewaySettings
from scriptbus.gateway.token_table import TokenTable

if TYPE_CHECKING:
    from scriptbus.gateway.fleet import LiveTargets


@dataclass
class Gateway:
    settings: GatewaySettings
    nc: Client
    js: JetStreamContext
    subjects: Subjects
    pool: asyncpg.Pool
    watcher: ProjectionWatcher
    # Set on SIGTERM/SIGINT: live output streams end so the server can stop.
    shutdown: asyncio.Event
    # The API tokens, folded from the token events and kept live.
    tokens: TokenTable = field(default_factory=TokenTable)
    # Targets whose request queue this process has already made sure of.
    queues: set[str] = field(default_factory=set)
    # Seals secret values for the executors; None when no public key is configured.
    secrets_key: PublicKey | None = None
    # What the live fleet served when last read (`fleet.explain_queued`).
    live_cache: Expiring[LiveTargets] = field(default_factory=Expiring)
    _claims: KeyValue | None = None
    _command_names: KeyValue | None = None
    _idempotency: KeyValue | None = None
    _wfactive: KeyValue | None = None
    _wfdefs: KeyValue | None = None
    _secrets: KeyValue | None = None

    async def claims(self) -> KeyValue:
        """The claims bucket, looked up once."""
        if self._claims is None:
            self._claims = await claims_bucket(self.js, self.subjects)
        return self._claims

    async def command_names(self) -> KeyValue:
        """The command-names bucket (name -> command id), looked up once."""
        if self._command_names is None:
            self._command_names = await command_names_bucket(self.js, self.subjects)
        return self._command_names

    async def idempotency(self) -> KeyValue:
        """The idempotency bucket, looked up once."""
        if self._idempotency is None:
            self._idempotency = await idempotency_bucket(self.js, self.subjects)
        return self._idempotency

    async def wfactive(self) -> KeyValue:
        """The bucket of each workflow's active run, looked up once."""
        if self._wfactive is None:
            self._wfactive = await wfactive_bucket(self.js, self.subjects)
        return self._wfactive

    async def wfdefs(self) -> KeyValue:
        """The bucket of projects whose definitions are being changed, looked up once."""
        if self._wfdefs is None:
            self._wfdefs = await wfdefs_bucket(self.js, self.subjects)
        return self._wfdefs

    async def secrets(self) -> KeyValue:
        """The bucket of sealed secret values (written here, only executors read it), looked up once."""
        if self._secrets is None:
            self._secrets = await secrets_bucket(self.js, self.subjects)
        return self._secrets


async def get_gateway(request: Request) -> Gateway:
    """FastAPI dependency: the process's `Gateway`, set by the app's lifespan. Async because FastAPI
    runs a sync dependency in its thread pool: a thread hop on every request for one attribute read."""
    gateway: Gateway = request.app.state.gateway
    return gateway
