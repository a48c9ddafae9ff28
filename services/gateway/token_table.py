"""The gateway's own table of API tokens, folded from the token events and kept live.

Every gateway follows `<prefix>.tokens.>` from the start with an ordered consumer, so a token made or
revoked through any gateway counts here within the consumer's latency, and a request is checked without
a database round trip. A presented token is looked up by its digest: the table never holds a token.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from scriptbus.events.bus import BUS_ERRORS
from scriptbus.events.codec import decode_event
from scriptbus.events.envelope import Event
from scriptbus.events.subjects import Subjects
from scriptbus.events.tokens import Role, TokenCreated, TokenRevoked, token_digest

log = logging.getLogger(__name__)

# How long a gateway waits at start for the token events stored so far.
LOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TokenEntry:
    token_id: str
    role: Role
    name: str
    revoked: bool = False

    @property
    def caller_name(self) -> str:
        """The name in the events this token causes: its own, or its id's first part when it has none."""
        return self.name or "token-" + self.token_id[:8]


class TokenTable:
    """Token digest -> entry, and the stream position folded so far."""

    def __init__(self) -> None:
        self._by_digest: dict[str, TokenEntry] = {}
        self._digest_of: dict[str, str] = {}
        self.position = 0
        self._moved = asyncio.Event()
        self._sub: JetStreamContext.PushSubscription | None = None

    # folding ------------------------------------------------------------------------------------
    def apply(self, event: Event, seq: int) -> None:
        """Fold one token event stored at stream sequence `seq`."""
        if isinstance(event, TokenCreated) and event.token_id not in self._digest_of:
            self._digest_of[event.token_id] = event.digest
            self._by_digest[event.digest] = TokenEntry(event.token_id, event.role, event.name)
        elif isinstance(event, TokenRevoked):
            digest = self._digest_of.get(event.token_id)
            if digest is not None:
                entry = self._by_digest[digest]
                self._by_digest[digest] = TokenEntry(entry.token_id, entry.role, entry.name, revoked=True)
        self._advance(seq)

    def _advance(self, seq: int) -> None:
        if seq > self.position:
            self.position = seq
            self._moved.set()
            self._moved = asyncio.Event()

    # reading ------------------------------------------------------------------------------------
    def find(self, token: str) -> TokenEntry | None:
        """The live (not revoked) entry of a presented token, or None."""
        entry = self._by_digest.get(token_digest(token))
        return entry if entry is not None and not entry.revoked else None

    def get(self, token_id: str) -> TokenEntry | None:
        digest = self._digest_of.get(token_id)
        return None if digest is None else self._by_digest[digest]

    def active(self) -> list[TokenEntry]:
        return [e for e in self._by_digest.values() if not e.revoked]

    def has_active(self) -> bool:
        return any(not e.revoked for e in self._by_digest.values())

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait (bounded) until the table has folded stream sequence `seq`; True when it has."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < seq:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._moved.wait(), left)
            except TimeoutError:
                return False
        return True

    # following ----------------------------------------------------------------------------------
    async def follow(self, js: JetStreamContext, subjects: Subjects) -> None:
        """Subscribe from the first token event on and return once every event stored so far is folded."""
        pattern = subjects.token_event("*", "*")
        try:
            mark = (await js.get_last_msg(subjects.events_stream, pattern)).seq or 0
        except nats.js.errors.NotFoundError:
            mark = 0

        async def take(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            try:
                event = decode_event(msg.data)
            except (ValueError, ValidationError) as exc:
                log.error("undecodable token event at seq %d skipped: %s", seq, exc)
                event = None
            if event is None:
                self._advance(seq)
            else:
                self.apply(event, seq)

        # The pattern is the subject, not a `ConsumerConfig.filter_subject`: nats-py sets the filter of the
        # consumers it creates to the subject given, so with "" this consumer received every event and
        # every output chunk of every run.
        self._sub = await js.subscribe(
            pattern, stream=subjects.events_stream, ordered_consumer=True, cb=take, deliver_policy=DeliverPolicy.ALL
        )
        if not await self.wait_for(mark, LOAD_TIMEOUT_S):
            raise TimeoutError(f"the token events up to seq {mark} did not arrive within {LOAD_TIMEOUT_S:.0f}s")
        log.info("token table loaded: %d live token(s), up to seq %d", len(self.active()), self.position)

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except BUS_ERRORS as exc:
                log.debug("unsubscribe: %s", exc)
