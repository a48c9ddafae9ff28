"""The write side of API tokens: a new token, or a revocation, as an event.

A revocation answers only once this gateway's token table has it, so the revoked token is refused from
the very next request here (other gateways follow within their consumer's latency).

Without `SCRIPTBUS_API_TOKENS`, the first API token ends anonymous access; so a change that would leave
tokens required but no admin token live (a first token that is not `admin`, revoking the last admin token
while others live) is refused with a 409 instead of locking everyone out of managing tokens.
"""

from __future__ import annotations

import logging
import secrets

from scriptbus.events.envelope import new_id
from scriptbus.events.tokens import Role, TokenCreated, TokenRevoked, token_digest
from scriptbus.gateway import actions, token_readmodels
from scriptbus.gateway.errors import BusUnavailable, GatewayError, db_errors
from scriptbus.gateway.state import Gateway
from scriptbus.gateway.token_schemas import NewToken, Token, TokenCreate
from scriptbus.gateway.token_table import TokenEntry

log = logging.getLogger(__name__)

TOKEN_PREFIX = "sb_"


class TokenNotFound(GatewayError):
    status_code = 404

    def __init__(self, token_id: str) -> None:
        super().__init__(f"token {token_id} not found")


class TokenConflict(GatewayError):
    status_code = 409


def new_token() -> str:
    """A fresh bearer token: 32 random bytes, URL-safe, with a prefix that tells what it is."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _lockout(gw: Gateway, live: list[TokenEntry]) -> bool:
    """True when tokens would be required (some live) yet no admin token would be live to manage them."""
    if gw.settings.tokens or not live:
        return False
    return all(e.role is not Role.admin for e in live)


async def create_token(gw: Gateway, body: TokenCreate, by: str) -> NewToken:
    live = gw.tokens.active()
    if _lockout(gw, [*live, TokenEntry("new", body.role, body.name)]):
        raise TokenConflict(
            "create an admin token first: once a token exists every caller needs one, and without an admin "
            "token nobody could manage tokens (or set SCRIPTBUS_API_TOKENS)"
        )
    if body.name and any(e.name == body.name for e in live):
        raise TokenConflict(f"a live token is named {body.name!r} already; names tell callers apart in events")
    token = new_token()
    event = TokenCreated(token_id=new_id(), digest=token_digest(token), role=body.role, name=body.name, created_by=by)
    seq = await actions.publish(gw, event, "create the token")
    log.info("token %s (%s, %r) created by %s (seq %d)", event.token_id, body.role.value, body.name, by, seq)
    # The caller's next request may use the token at once, here at least.
    await gw.tokens.wait_for(seq, gw.settings.read_your_writes_timeout_s)
    await actions.readable(gw, seq)
    return NewToken(
        id=event.token_id,
        role=body.role,
        name=body.name,
        created_at=event.occurred_at,
        created_by=by,
        token=token,
    )


async def revoke_token(gw: Gateway, token_id: str, by: str) -> None:
    entry = gw.tokens.get(token_id)
    if entry is None:
        raise TokenNotFound(token_id)
    if entry.revoked:
        return
    if _lockout(gw, [e for e in gw.tokens.active() if e.token_id != token_id]):
        raise TokenConflict(
            f"token {token_id} is the last admin token while others are live: revoke those first, or "
            "create another admin token (or set SCRIPTBUS_API_TOKENS)"
        )
    seq = await actions.publish(gw, TokenRevoked(token_id=token_id, revoked_by=by), "revoke the token")
    log.info("token %s revoked by %s (seq %d)", token_id, by, seq)
    if not await gw.tokens.wait_for(seq, gw.settings.read_your_writes_timeout_s):
        raise BusUnavailable(
            f"token {token_id} is revoked in the stream, but this gateway has not seen it yet; it will refuse "
            "the token within moments"
        )
    await actions.readable(gw, seq)


async def list_tokens(gw: Gateway, include_revoked: bool) -> list[Token]:
    with db_errors():
        return await token_readmodels.list_tokens(gw.pool, include_revoked)
