"""The gateway and the recorder as real processes, as the `api` fixture hands them to a test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from scriptbus.events import Subjects, decode_event
from tests.helpers.processes import ServiceProcess


@dataclass
class Api:
    client: httpx.AsyncClient
    gateway: ServiceProcess
    recorder: ServiceProcess
    nc: Client
    js: JetStreamContext
    subjects: Subjects

    async def stored_messages(self) -> int:
        """Messages in the events stream: every event and output chunk ever published."""
        info = await self.js.stream_info(self.subjects.events_stream)
        return int(info.state.messages)

    async def event_types(self, run_id: str) -> list[str]:
        """Types of the events stored for one run, in stream order ("out" for an output chunk)."""
        types: list[str] = []
        seq = 1
        while True:
            try:
                msg = await self.js.get_msg(
                    self.subjects.events_stream, seq=seq, subject=self.subjects.run_all(run_id), next=True
                )
            except nats.js.errors.NotFoundError:
                return types
            event = None if (msg.subject or "").endswith(".out") else decode_event(msg.data or b"")
            types.append(event.type if event else "out")
            seq = (msg.seq or 0) + 1


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    """POST a run (`echo hi` unless `script` is given) and return it; it must be accepted."""
    response = await api.client.post("/api/v1/runs", json={"script": "echo hi", **fields})
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run
