"""Output chunks: the script's raw bytes as the payload, the facts about them in headers.

Raw payloads are what make `nats sub '<prefix>.runs.*.out'` print live output as plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

HEADER_STREAM = "Scriptbus-Stream"
HEADER_OFFSET = "Scriptbus-Offset"
HEADER_STREAM_OFFSET = "Scriptbus-Stream-Offset"
HEADER_HOST = "Scriptbus-Host"
HEADER_MSG_ID = "Nats-Msg-Id"


class OutputStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """`offset` counts bytes of the run's whole output (both streams, in publish order);
    `stream_offset` counts bytes of this chunk's stream alone."""

    run_id: str
    stream: OutputStream
    offset: int
    stream_offset: int
    data: bytes
    host: str = ""

    @property
    def end(self) -> int:
        return self.offset + len(self.data)

    def headers(self) -> dict[str, str]:
        return {
            HEADER_STREAM: self.stream.value,
            HEADER_OFFSET: str(self.offset),
            HEADER_STREAM_OFFSET: str(self.stream_offset),
            HEADER_HOST: self.host,
            # A republished chunk (after a reconnect) is dropped by JetStream's duplicate window.
            HEADER_MSG_ID: f"out:{self.run_id}:{self.offset}",
        }

    @classmethod
    def from_message(cls, run_id: str, data: bytes, headers: Mapping[str, str] | None) -> OutputChunk:
        h = headers or {}
        return cls(
            run_id=run_id,
            stream=OutputStream(h.get(HEADER_STREAM, "stdout")),
            offset=int(h.get(HEADER_OFFSET, "0")),
            stream_offset=int(h.get(HEADER_STREAM_OFFSET, "0")),
            data=data,
            host=h.get(HEADER_HOST, ""),
        )
