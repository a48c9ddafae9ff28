"""A run's output followed through the gateway (`?follow=true`), read as it arrives."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx

from tests.helpers.gateway import Api
from tests.helpers.waiting import eventually


class Follower:
    """A `?follow=true` response read as it arrives."""

    def __init__(self, api: Api, run_id: str, *, route: str = "output", **params: Any) -> None:
        self.received = b""
        self.ended = asyncio.Event()
        self.status = 0
        self._opened = asyncio.Event()
        self._task = asyncio.create_task(self._read(api.client, f"/api/v1/runs/{run_id}/{route}", params))

    async def _read(self, client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> None:
        try:
            async with client.stream("GET", path, params={**params, "follow": "true"}, timeout=60) as response:
                self.status = response.status_code
                self._opened.set()
                async for data in response.aiter_raw():
                    self.received += data
        finally:
            self._opened.set()
            self.ended.set()

    async def opened(self) -> int:
        await asyncio.wait_for(self._opened.wait(), 20)
        return self.status

    async def until(self, expected: bytes, timeout: float = 20.0) -> None:
        """Wait until as many bytes as `expected` have arrived (or the response ended); they must be those."""

        def arrived() -> bool:
            assert len(self.received) >= len(expected) or self.ended.is_set(), f"so far: {self.received!r}"
            return True

        await eventually(arrived, timeout, interval=0.01, what=f"{len(expected)} bytes followed")
        assert self.received == expected

    async def end(self, timeout: float = 20.0) -> bytes:
        await asyncio.wait_for(self.ended.wait(), timeout)
        await self._task
        return self.received

    async def aclose(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def parse_chunks(ndjson: bytes) -> list[tuple[str, int, bytes]]:
    """`/output/chunks` lines as (stream, offset, exact bytes); every line must be whole."""
    assert ndjson == b"" or ndjson.endswith(b"\n"), ndjson[-200:]
    chunks = []
    for line in ndjson.splitlines():
        item = json.loads(line)
        if item.get("base64"):
            data = base64.b64decode(item["data"])
        else:
            assert "base64" not in item, item
            data = item["data"].encode("utf-8")
        chunks.append((item["stream"], item["offset"], data))
    return chunks
