"""How far the recorder's projection has got, so a write can wait until its event is readable."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from scriptbus.events.positions import POSITION_CHANNEL
from scriptbus.gateway import readmodels

log = logging.getLogger(__name__)

# Polls back the notifications: they are lost while the listening connection is down, and a
# notification that was sent before we began waiting must not leave a writer waiting for nothing.
POLL_WHILE_LISTENING_S = 1.0
POLL_WITHOUT_LISTENER_S = 0.1
RECONNECT_S = 1.0


class ProjectionWatcher:
    """Tracks `projection_position` through LISTEN on `scriptbus_position` on a dedicated connection,
    with short polls as the fallback."""

    def __init__(self, database_url: str, pool: asyncpg.Pool) -> None:
        self._database_url = database_url
        self._pool = pool
        self._seq = 0
        self._changed = asyncio.Event()
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @property
    def position(self) -> int:
        """The highest applied stream sequence seen so far."""
        return self._seq

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="projection-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _advance(self, seq: int) -> None:
        if seq > self._seq:
            log.debug("projection at seq %d", seq)
            self._seq = seq
            # Wake every waiter at once; each re-checks its own target.
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """True once the projection has applied stream sequence `seq`; False if `timeout` passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._seq < seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            interval = POLL_WHILE_LISTENING_S if self._listening else POLL_WITHOUT_LISTENER_S
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(remaining, interval))
            except TimeoutError:
                await self.poll()
        return True

    async def poll(self) -> None:
        """Read the position from the table (errors leave it unchanged: the caller's bound still holds)."""
        try:
            self._advance(await readmodels.projection_position(self._pool))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.debug("polling the projection position failed: %s", exc)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            self._advance(int(str(payload)))  # asyncpg passes a NOTIFY payload as str
        except ValueError:
            log.warning("ignoring a %s notification with payload %r", POSITION_CHANNEL, payload)

    async def _listen_forever(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self._database_url, timeout=5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.debug("projection listener cannot connect: %s", exc)
                await asyncio.sleep(RECONNECT_S)
                continue
            closed = asyncio.Event()
            conn.add_termination_listener(lambda _c, closed=closed: closed.set())
            try:
                await conn.add_listener(POSITION_CHANNEL, self._on_notify)
                self._listening = True
                log.debug("listening on %s", POSITION_CHANNEL)
                await self.poll()
                await closed.wait()
                log.warning("projection listener connection closed; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("projection listener failed: %s", exc)
            finally:
                self._listening = False
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(RECONNECT_S)
