"""Reading the events stream in batches with an ephemeral pull consumer.

PostgreSQL holds the position (`projection_position`), so the consumer keeps none: it is ephemeral,
starts at `last applied + 1` (`deliver_policy=by_start_sequence`) and acks nothing (`ack_policy=none`).
A durable consumer with acks would keep a second position that can disagree with PostgreSQL's and
cost an ack per message; when anything goes wrong the recorder just makes a new consumer.

Pull requests are sent here rather than with nats-py's `fetch` because `fetch` cannot bound a batch
in bytes: 1000 output chunks of 64 KiB are 64 MiB, which is nats-server's default `max_pending` for a
client, and a server that has more than that queued for us drops the connection as a slow consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from scriptbus.events.envelope import new_id
from scriptbus.events.streams import MAX_MSG_SIZE

log = logging.getLogger(__name__)

# An ephemeral consumer left behind by a killed recorder disappears after this long without pulls.
CONSUMER_INACTIVE_S = 30.0
# Check that an idle consumer still exists after this long without messages.
IDLE_CHECK_S = 5.0
# Deleting our consumer on close is a courtesy (it expires anyway): never worth holding a shutdown for.
CLOSE_TIMEOUT_S = 2.0
# A batch must have room for the largest message the stream accepts (plus its subject and headers),
# or that message would block the feed forever.
MIN_BATCH_BYTES = MAX_MSG_SIZE + 64 * 1024
# How long past its expiry a pull request's closing status is waited for.
PULL_GRACE_S = 0.5

_STATUS = "Status"
_DESCRIPTION = "Description"
# No messages (no_wait) and request expired: the request is over.
_CLOSING = ("404", "408")
_CLOSING_409 = ("Message Size Exceeds MaxBytes", "Batch Completed")


class FeedError(Exception):
    """The consumer is gone or the server answered a pull with an error; start the feed again."""


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
    """Batches of one stream from a given sequence on, in stream order."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        stream: str,
        *,
        batch_size: int,
        batch_max_bytes: int,
        idle_wait_s: float,
    ) -> None:
        self._nc = nc
        self._js = js
        self._stream = stream
        self._batch_size = batch_size
        self._batch_max_bytes = max(batch_max_bytes, MIN_BATCH_BYTES)
        self._idle_wait_s = idle_wait_s
        self._consumer: str | None = None
        self._inbox: Subscription | None = None
        self._inbox_prefix = ""
        self._requests = 0
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._idle_since: float | None = None
        self._ahead: asyncio.Future[list[StreamMessage]] | None = None

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
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def deliver(msg: Msg) -> None:
            queue.put_nowait(msg)

        self._queue = queue
        self._inbox_prefix = self._nc.new_inbox()
        self._inbox = await self._nc.subscribe(f"{self._inbox_prefix}.*", cb=deliver)
        self._consumer = name
        self._idle_since = None
        log.info("consuming %s from seq %d", self._stream, from_seq)

    async def close(self) -> None:
        """Drop the consumer (best effort: an orphan expires on its own)."""
        inbox, name, ahead = self._inbox, self._consumer, self._ahead
        self._inbox = self._consumer = self._ahead = None
        if ahead is not None:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ahead
        if inbox is not None:
            with contextlib.suppress(Exception):  # the connection may already be gone
                await inbox.unsubscribe()
        if name is not None and self._nc.is_connected:  # else it would wait out the request timeout
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._js.delete_consumer(self._stream, name), CLOSE_TIMEOUT_S)

    async def next_batch(self) -> list[StreamMessage]:
        """Up to `batch_size` messages (and about `batch_max_bytes`); returns as soon as some are
        there, [] after an idle wait.

        While the caller applies a batch, the next one is already being fetched: receiving from NATS
        then overlaps writing to PostgreSQL instead of adding to it.
        """
        if self._inbox is None:
            raise RuntimeError("feed not started")
        ahead, self._ahead = self._ahead, None
        msgs = await (ahead if ahead is not None else self._read())
        if msgs:
            self._ahead = asyncio.ensure_future(self._read())
        return msgs

    async def _read(self) -> list[StreamMessage]:
        # Take what is there now and never hold a partial batch open: under load, a batch fills by
        # itself while the previous one is written; when events trickle in, each is applied at once
        # (a pull left open for more would add its whole wait to every POST's read-your-writes).
        msgs = await self._pull(self._batch_size, None)
        if not msgs:
            # Nothing waiting: long-poll for one message and hand it over at once. Whatever came with
            # it is fetched by the read-ahead while that message is applied, not by another round
            # trip before it.
            msgs = await self._pull(1, self._idle_wait_s)
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

    async def _pull(self, batch: int, expires_s: float | None) -> list[Msg]:
        """One pull request; returns when it is fulfilled, closed by a status, or has expired.
        `expires_s=None` asks only for messages available right now (`no_wait`).

        All requests deliver into one subscription, so the queue is one ordered run of messages:
        whatever arrives after we stopped waiting for a request simply counts for the next one.
        Status messages, though, arrive on the reply subject of their own request, which tells a
        late one (e.g. the "409 Batch Completed" newer servers send after a full batch) from ours.
        """
        assert self._inbox is not None and self._consumer is not None
        self._requests += 1
        reply = f"{self._inbox_prefix}.{self._requests}"
        request: dict[str, object] = {"batch": batch, "max_bytes": self._batch_max_bytes}
        # The server ignores no_wait when expires is set too.
        if expires_s is None:
            request["no_wait"] = True
        else:
            request["expires"] = int(expires_s * 1e9)
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._consumer}",
            json.dumps(request).encode(),
            reply=reply,
        )
        loop = asyncio.get_running_loop()
        # A request that ends exactly at max_bytes gets no closing status; nor does one lost in a
        # reconnect (messages lost with it show up as a jump in sequence numbers).
        deadline = loop.time() + (expires_s or 0.0) + PULL_GRACE_S
        msgs: list[Msg] = []
        while len(msgs) < batch:
            try:
                msg = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    msg = await asyncio.wait_for(self._queue.get(), max(deadline - loop.time(), 0))
                except TimeoutError:
                    break
            headers = msg.headers or {}
            status = headers.get(_STATUS) if not msg.data else None
            if status is None:
                msgs.append(msg)
            elif msg.subject != reply or status == "100":  # another request's, or a heartbeat
                continue
            elif status in _CLOSING or (status == "409" and headers.get(_DESCRIPTION, "") in _CLOSING_409):
                break
            else:
                raise FeedError(f"pull answered {status} {headers.get(_DESCRIPTION, '')}")
        return msgs

    async def pending(self) -> int:
        """Messages of the stream the consumer has not delivered yet (raises NotFoundError if it is gone)."""
        assert self._consumer is not None
        info = await self._js.consumer_info(self._stream, self._consumer)
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
