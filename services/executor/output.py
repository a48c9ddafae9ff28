"""A run's output on its way to NATS: what a quiet run prints is published at once; while the run
published within `QUIET_S` or one of its chunks awaits its ack, reads are gathered (up to 64 KiB a
chunk), so a lone line goes out immediately and a flood goes out in big chunks. A bounded number of
unacknowledged chunks per executor, and every chunk acknowledged before the run's finish is published."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from scriptbus.events import OutputChunk, OutputStream
from scriptbus.events.bus import BUS_ERRORS
from scriptbus.executor.masking import OutputMask

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
# A run's bytes go out at once when it published nothing for this long and no ack of its is awaited;
# otherwise they are gathered until both hold (or a chunk is full): a flood of short lines leaves in
# big chunks, a lone line right away.
QUIET_S = 0.005
# Unacknowledged chunks per executor: at most this many * 64 KiB in flight. When NATS is slow, reads
# stop, the pipe fills and the script blocks on its writes: memory stays bounded.
MAX_PENDING_ACKS = 256
ACK_TIMEOUT_S = 10.0


@dataclass
class _Pending:
    future: asyncio.Future[PubAck]
    chunk: OutputChunk
    subject: str
    sent_at: float = field(default_factory=time.monotonic)
    # Published again (synchronously) after its ack was lost; its future no longer matters.
    resent: bool = False

    def failed(self) -> bool:
        if self.resent:
            return False
        return self.future.cancelled() or self.future.exception() is not None


class OutputPublisher:
    """Publishes output chunks for all the runs of one executor, `MAX_PENDING_ACKS` unacked at most.

    A chunk in flight when the connection drops may be lost; JetStream keeps the ones before it, so
    after a reconnect each run first publishes again all of its unacked chunks, in order (duplicates
    are dropped by msg id), and only then new ones: the stream keeps every byte in offset order."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        max_pending: int = MAX_PENDING_ACKS,
        ack_timeout_s: float = ACK_TIMEOUT_S,
    ) -> None:
        self._nc = nc
        self._js = js
        self._slots = asyncio.Semaphore(max_pending)
        self._ack_timeout_s = ack_timeout_s
        self._runs: set[RunOutput] = set()
        self.gave_up = False

    def give_up(self) -> None:
        """Stop retrying: chunks not yet stored are dropped (shutdown while NATS is unreachable)."""
        self.gave_up = True

    def run_output(self, subject: str, run_id: str, host: str, max_bytes: int) -> RunOutput:
        """The output of one run, published to `subject`, at most `max_bytes` of it."""
        out = RunOutput(self, subject, run_id, host, max_bytes)
        self._runs.add(out)
        return out

    @property
    def reconnects(self) -> int:
        return int(self._nc.stats["reconnects"])

    async def _connected(self) -> bool:
        """Wait until the connection is up (publishing into the reconnect buffer would put new chunks
        ahead of lost ones); False when there is no point waiting any more."""
        while not self._nc.is_connected:
            if self._nc.is_closed or self.gave_up:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _send(self, out: RunOutput, chunk: OutputChunk) -> None:
        if not await self._acquire():
            return
        try:
            future = await self._js.publish_async(out.subject, chunk.data, headers=chunk.headers())
        except BUS_ERRORS as exc:
            self._slots.release()
            log.warning("run %s: output publish failed (%s); retrying", out.run_id, exc)
            await self._republish(out.subject, chunk)
            return
        future.add_done_callback(lambda _: self._slots.release())
        future.add_done_callback(out._acked)
        out.pending.append(_Pending(future, chunk, out.subject))

    async def _acquire(self) -> bool:
        while not self.gave_up:
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self._ack_timeout_s / 2)
                return True
            except TimeoutError:
                # Acks that never come would hold their slots forever: give up on them; their runs
                # publish those chunks again (JetStream drops any duplicate by msg id).
                self._expire_stale()
        return False

    def _expire_stale(self) -> None:
        now = time.monotonic()
        for out in self._runs:
            for entry in out.pending:
                if entry.future.done():
                    continue
                if now - entry.sent_at < self._ack_timeout_s:
                    break
                entry.future.cancel()

    async def _republish(self, subject: str, chunk: OutputChunk) -> None:
        delay = 0.1
        while not self._nc.is_closed and not self.gave_up:
            try:
                await self._js.publish(subject, chunk.data, headers=chunk.headers(), timeout=self._ack_timeout_s)
                return
            except BUS_ERRORS as exc:
                log.warning("run %s: output republish at offset %d failed: %s", chunk.run_id, chunk.offset, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        log.error("run %s: output at offset %d not stored: NATS unreachable", chunk.run_id, chunk.offset)

    def _forget(self, out: RunOutput) -> None:
        self._runs.discard(out)


class RunOutput:
    """One run's output: offsets across both streams, the byte cap, and its unacked chunks."""

    def __init__(self, publisher: OutputPublisher, subject: str, run_id: str, host: str, max_bytes: int) -> None:
        self._publisher = publisher
        self.subject = subject
        self.run_id = run_id
        self.host = host
        self.max_bytes = max_bytes
        self.offset = 0
        self.stream_offsets = {OutputStream.STDOUT: 0, OutputStream.STDERR: 0}
        self.dropped_bytes = 0
        self.pending: deque[_Pending] = deque()
        self._synced_at = publisher.reconnects
        # Offsets are assigned and chunks handed to NATS in one order, whichever pipe they came from.
        self._lock = asyncio.Lock()
        # Read but not yet published, in read order; consecutive reads of one stream joined.
        self._gathered: list[tuple[OutputStream, bytearray]] = []
        self._gathered_bytes = 0
        # Flushes started by acks and timers (they queue on the lock behind any other).
        self._flushers: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def truncated(self) -> bool:
        return self.dropped_bytes > 0

    def add(self, stream: OutputStream, data: bytes) -> bool:
        """Take bytes read from `stream`, in read order across both streams. True when the caller should
        `flush()` now: the run is quiet (`QUIET_S`) or a chunk's worth is gathered. Otherwise an ack or a
        timer flushes them (coalescing under load)."""
        if not data:
            return False
        if self._gathered and self._gathered[-1][0] is stream:
            self._gathered[-1][1].extend(data)
        else:
            self._gathered.append((stream, bytearray(data)))
        self._gathered_bytes += len(data)
        return self.full or self._ready()

    async def flush(self, whole: bool = True) -> None:
        """Publish what is gathered, in order; with `whole` False, a last part smaller than a chunk stays
        gathered for the ack of what goes now to send. Waits while the executor has too many unacked chunks
        or NATS is away."""
        async with self._lock:
            pieces = self._take()
            # Only when a chunk's worth was gathered: something goes out now, and its ack sends the rest.
            if not whole and len(pieces) > 1 and len(pieces[-1][1]) < CHUNK_SIZE:
                stream, rest = pieces.pop()
                self._gathered.insert(0, (stream, bytearray(rest)))
                self._gathered_bytes += len(rest)
            for stream, data in pieces:
                await self._write_one(stream, data)

    @property
    def full(self) -> bool:
        """A chunk's worth is gathered."""
        return self._gathered_bytes >= CHUNK_SIZE

    def _take(self) -> list[tuple[OutputStream, bytes]]:
        pieces = [
            (stream, bytes(buf[i : i + CHUNK_SIZE]))
            for stream, buf in self._gathered
            for i in range(0, len(buf), CHUNK_SIZE)
        ]
        self._gathered.clear()
        self._gathered_bytes = 0
        return pieces

    def _in_flight(self) -> bool:
        return bool(self.pending) and not self.pending[-1].future.done()

    def _ready(self) -> bool:
        """Whether gathered bytes may go now; if not, makes sure an ack or a timer looks again."""
        if self._in_flight():
            return False  # its ack calls `_wake`
        wait = self._last_sent + QUIET_S - self._loop.time()
        if wait <= 0:
            return True
        if self._timer is None:
            self._timer = self._loop.call_later(wait, self._timed_out)
        return False

    def _timed_out(self) -> None:
        self._timer = None
        self._wake()

    def _acked(self, _: object) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._gathered_bytes and self._ready():
            task = self._loop.create_task(self.flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

    async def _write_one(self, stream: OutputStream, data: bytes) -> None:
        room = self.max_bytes - self.offset
        if len(data) > room:
            self.dropped_bytes += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        if not data:
            return
        chunk = OutputChunk(
            run_id=self.run_id,
            stream=stream,
            offset=self.offset,
            stream_offset=self.stream_offsets[stream],
            data=data,
            host=self.host,
        )
        self.offset += len(data)
        self.stream_offsets[stream] += len(data)
        self._last_sent = self._loop.time()
        await self._resync()
        await self._settle(block=False)
        await self._publisher._send(self, chunk)

    async def drain(self) -> None:
        """Return once every chunk published so far is stored in JetStream (republishing any whose ack
        failed or never came), so an event published next comes after all of this run's output."""
        while self._flushers:
            await asyncio.gather(*self._flushers)
        await self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            await self._resync()
            await self._settle(block=True)
        self._publisher._forget(self)

    async def _resync(self) -> None:
        """After a reconnect, publish every unacked chunk again, in order, before anything new."""
        while await self._publisher._connected() and self._synced_at != self._publisher.reconnects:
            self._synced_at = self._publisher.reconnects
            unacked = [e for e in self.pending if not e.resent and (not e.future.done() or e.failed())]
            if unacked:
                log.info("run %s: republishing %d unacked chunks after a reconnect", self.run_id, len(unacked))
            for entry in unacked:
                entry.resent = True
                entry.future.cancel()  # its ack went with the old connection; frees its slot
                await self._publisher._republish(entry.subject, entry.chunk)

    async def _settle(self, block: bool) -> None:
        timeout = self._publisher._ack_timeout_s
        while self.pending:
            entry = self.pending[0]
            if not entry.future.done():
                if not block:
                    return
                if not await self._await_ack(entry, timeout):
                    # The connection dropped while we waited: republish everything unacked in order.
                    await self._resync()
                    continue
            self.pending.popleft()
            if entry.failed():
                await self._publisher._republish(entry.subject, entry.chunk)

    async def _await_ack(self, entry: _Pending, timeout: float) -> bool:
        """Wait for the ack of `entry` (cancelled past `timeout`); False if a reconnect came first."""
        while not entry.future.done():
            if self._synced_at != self._publisher.reconnects:
                return False
            remaining = entry.sent_at + timeout - time.monotonic()
            if remaining <= 0:
                entry.future.cancel()
                break
            try:
                await asyncio.wait_for(asyncio.shield(entry.future), timeout=min(remaining, 0.25))
            except TimeoutError:
                pass
            except BaseException:
                # A failed publish is looked at by the caller; a cancellation of ours propagates.
                if not entry.future.done():
                    raise
        return True


class Pump:
    """Copies one pipe into a run's output, read by read (up to 64 KiB each); `RunOutput.add` decides
    when the bytes go out."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        stream: OutputStream,
        out: RunOutput,
        mask: OutputMask | None = None,
        stop_reading: Callable[[], None] | None = None,
    ) -> None:
        self._reader = reader
        self._stream = stream
        self._out = out
        # Hides the run's secret values (`masking.py`).
        self._mask = mask
        # Closes our end of the pipe (`Spawned.close_pipe`): what the pipe and the reader hold still comes
        # out, then EOF.
        self._stop_reading = stop_reading or reader.feed_eof
        self._loop = asyncio.get_running_loop()
        self._last_read = self._loop.time()
        self._abandoned = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name=f"pump-{self._out.run_id}-{self._stream.value}")
        return self.task

    def idle_s(self) -> float:
        """Seconds since a read last brought bytes (or since the start)."""
        return self._loop.time() - self._last_read

    def abandon(self) -> bool:
        """Stop reading the pipe (a process outside the group may hold it open forever): every byte read
        from it so far is still published, then the pump ends. Returns whether it was still running."""
        if self.task is None or self.task.done() or self._abandoned:
            return False
        self._abandoned = True
        self._stop_reading()
        return True

    async def _run(self) -> None:
        out = self._out
        mask = self._mask
        while data := await self._reader.read(CHUNK_SIZE):
            self._last_read = self._loop.time()
            if out.add(self._stream, mask.feed(data) if mask is not None else data):
                # Full: whole chunks go, a partial tail waits for their ack; quiet: everything goes.
                await out.flush(whole=not out.full)
        if mask is not None:
            out.add(self._stream, mask.end())
        await out.flush()
