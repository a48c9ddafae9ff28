"""Reading the events stream in batches with an ephemeral pull consumer.

PostgreSQL holds the position (`projection_position`), so the consumer keeps none: it is ephemeral,
starts at `last applied + 1` (`deliver_policy=by_start_sequence`) and acks nothing (`ack_policy=none`).
A durable consumer with acks would keep a second position that can disagree with PostgreSQL's and
cost an ack per message; when anything goes wrong the recorder just makes a new consumer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Mapping

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from scriptbus.events.envelope import new_id
from scriptbus.events.subjects import Subjects

log = logging.getLogger(__name__)

# An ephemeral consumer left behind by a killed recorder disappears after this long without pulls.
CONSUMER_INACTIVE_S = 30.0
# Check that an idle consumer still exists after this long without messages.
IDLE_CHECK_S = 5.0


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One message of the events stream, as the projections see it."""

    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str] | None = None

    @classmethod
    def from_msg(cls, msg: Msg) -> StreamMessage:
        return cls(seq=msg.metadata.sequence.stream, subject=msg.subject, data=msg.data, headers=msg.headers)


class EventFeed:
    """Batches of the events stream from a given sequence on, in stream order."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        batch_size: int,
        batch_wait_s: float,
        idle_wait_s: float,
    ) -> None:
        self._js = js
        self._stream = subjects.events_stream
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._idle_wait_s = idle_wait_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._consumer: str | None = None
        self._idle_since: float | None = None

    async def start(self, from_seq: int) -> None:
        """(Re)create the consumer so the next batch begins at stream sequence `from_seq`."""
        await self.close()
        name = "recorder_" + new_id().replace("-", "")
        config = ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(from_seq, 1),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=CONSUMER_INACTIVE_S,
            mem_storage=True,
            num_replicas=1,
        )
        await self._js.add_consumer(self._stream, config)
        self._sub = await self._js.pull_subscribe_bind(name, stream=self._stream)
        self._consumer = name
        self._idle_since = None
        log.info("consuming %s from seq %d", self._stream, from_seq)

    async def close(self) -> None:
        """Drop the consumer (best effort: an orphan expires on its own)."""
        sub, name = self._sub, self._consumer
        self._sub = self._consumer = None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                pass
        if name is not None:
            try:
                await self._js.delete_consumer(self._stream, name)
            except Exception:  # noqa: BLE001
                pass

    async def next_batch(self) -> list[StreamMessage]:
        """Up to `batch_size` messages; returns as soon as some are there, [] after an idle wait."""
        if self._sub is None:
            raise RuntimeError("feed not started")
        msgs = await self._fetch(self._batch_size, self._batch_wait_s)
        if not msgs:
            # Nothing waiting: long-poll for one message, then take whatever came with it.
            msgs = await self._fetch(1, self._idle_wait_s)
            if msgs and self._batch_size > 1:
                msgs += await self._fetch(self._batch_size - 1, self._batch_wait_s)
        loop = asyncio.get_running_loop()
        if msgs:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = loop.time()
        elif loop.time() - self._idle_since > IDLE_CHECK_S:
            self._idle_since = loop.time()
            # A consumer removed under us (server restart, inactivity) would otherwise look idle forever.
            await self.pending()
        return [StreamMessage.from_msg(m) for m in msgs]

    async def _fetch(self, batch: int, timeout: float) -> list[Msg]:
        assert self._sub is not None
        try:
            return await self._sub.fetch(batch, timeout=timeout)
        except nats.errors.TimeoutError:
            return []

    async def pending(self) -> int:
        """Messages of the stream the consumer has not delivered yet (raises NotFoundError if it is gone)."""
        assert self._sub is not None
        info = await self._sub.consumer_info()
        return int(info.num_pending or 0)

    async def last_seq(self) -> int:
        """The stream's last sequence number right now."""
        info = await self._js.stream_info(self._stream)
        return int(info.state.last_seq)

    async def only_deleted_between(self, first: int, end: int) -> bool:
        """True when no message of sequence first..end-1 is still in the stream, i.e. a jump over them
        is not a lost delivery but messages that were deleted or aged out."""
        info = await self._js.stream_info(self._stream)
        for seq in range(max(first, int(info.state.first_seq)), end):
            try:
                await self._js.get_msg(self._stream, seq)
            except nats.js.errors.NotFoundError:
                continue
            return False
        return True
