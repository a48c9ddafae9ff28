"""API tokens as events: who may call the gateway, with which role, under which name.

The token itself never appears in an event (nor in a read model or a log): only its SHA-256 digest, which
is how every gateway looks a presented token up. Every gateway folds these events into its own table, so a
revocation takes effect everywhere without a database round trip per request.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Literal

from pydantic import Field

from scriptbus.events.envelope import Event

# A token's `name`: what appears as `requested_by`, `stopped_by`, … in the events the token causes.
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$"


class Role(enum.StrEnum):
    """What a token may do, in rising order: each role may do everything the one below it may."""

    read = "read"
    run = "run"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Role.read: 0, Role.run: 1, Role.admin: 2}


def token_digest(token: str) -> str:
    """How a token is stored and looked up: its SHA-256 (tokens are random, so no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenEvent(Event):
    token_id: str


class TokenCreated(TokenEvent):
    type: Literal["token.created"] = "token.created"
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    name: str = ""
    created_by: str = ""


class TokenRevoked(TokenEvent):
    """From this event on the token is refused; it never comes back."""

    type: Literal["token.revoked"] = "token.revoked"
    revoked_by: str = ""
