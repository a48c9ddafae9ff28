"""A value kept for a short while, so a hot path does not read the same rows on every request."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

T = TypeVar("T")

# Longest a value is kept, whatever its own freshness: a state change (an executor drains or stops)
# reaches the answers within this long.
MAX_AGE_S = 1.0


class Expiring(Generic[T]):
    """One value and the monotonic moment it goes stale."""

    def __init__(self, max_age_s: float = MAX_AGE_S) -> None:
        self._max_age_s = max_age_s
        self._value: T | None = None
        self._until = 0.0

    def keep(self, value: T, fresh_for_s: float = float("inf")) -> None:
        """Keep `value` for `fresh_for_s` seconds, at most `max_age_s`."""
        self._value = value
        self._until = time.monotonic() + min(fresh_for_s, self._max_age_s)

    def get(self) -> T | None:
        """The value while it is fresh, else None."""
        if self._value is not None and time.monotonic() < self._until:
            return self._value
        return None
