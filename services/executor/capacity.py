"""Run slots shared by all of an executor's pull loops, so together they never exceed the limit."""

from __future__ import annotations

import asyncio
from collections import deque


class Capacity:
    """`limit` slots shared by `parties` pull loops. A loop reserves slots before it fetches (one per
    message it may get) and hands back the ones it did not use; each run gives its slot back when it
    is over. Waiters are served first come, first served, and one loop takes at most its share of the
    limit, so a busy queue cannot starve another."""

    def __init__(self, limit: int, parties: int = 1) -> None:
        self.limit = limit
        self.used = 0
        self.share = max(1, -(-limit // max(parties, 1)))
        self._waiters: deque[tuple[asyncio.Future[int], int]] = deque()
        self._closed = False

    @property
    def free(self) -> int:
        return self.limit - self.used

    async def reserve(self, most: int) -> int:
        """Wait for a free slot, then take up to `most` of them (and at most a share); 0 once
        `close()` was called."""
        if self._closed:
            return 0
        if not self._waiters and self.free > 0:
            return self._take(most)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, most))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())
            else:
                self._waiters = deque(w for w in self._waiters if w[0] is not future)
            raise

    def release(self, n: int = 1) -> None:
        """Give `n` slots back."""
        if n <= 0:
            return
        self.used -= n
        assert self.used >= 0, "released more slots than reserved"
        self._dispatch()

    def close(self) -> None:
        """Wake every waiter with no slots: the executor is draining."""
        self._closed = True
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_result(0)

    def _take(self, most: int) -> int:
        n = max(0, min(self.free, most, self.share))
        self.used += n
        return n

    def _dispatch(self) -> None:
        # Slots go straight to the waiters in order, so a loop that releases and reserves again at
        # once cannot take them back from a loop that has been waiting.
        while self._waiters and self.free > 0 and not self._closed:
            future, most = self._waiters.popleft()
            if not future.done():
                future.set_result(self._take(most))
