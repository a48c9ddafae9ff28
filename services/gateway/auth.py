"""Who may call the API and what they may do: bearer tokens carry a role, routes name the role they need.

Roles are ordered: `read` sees runs, output, commands, workflows and the fleet; `run` may also start and
stop runs and workflow runs; `admin` may also manage saved commands, workflows, tokens, secrets and
executors. Tokens are required whenever the gateway listens beyond loopback; on loopback without any
configured token every caller is an anonymous admin (a single-user machine).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from scriptbus.gateway.settings import GatewaySettings

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`SCRIPTBUS_API_TOKENS` or `POST /api/v1/tokens`); required when tokens are set.",
)


class Role(enum.StrEnum):
    read = "read"
    run = "run"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Role.read: 0, Role.run: 1, Role.admin: 2}


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request. `token_id` is None for the anonymous loopback caller;
    `name` goes into the events the caller causes (`requested_by`, `stopped_by`, …)."""

    role: Role
    name: str = ""
    token_id: str | None = None

    def may(self, role: Role) -> bool:
        return self.role.rank >= role.rank


ANONYMOUS = Caller(Role.admin)


def token_digest(token: str) -> str:
    """How a token is stored and looked up: its SHA-256 (tokens are random, so no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    """True when binding to `host` keeps the API on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # A name other than localhost may resolve anywhere: treat it as exposed.
        return False


def exposure_error(settings: GatewaySettings) -> str | None:
    """Why the gateway must not start with these settings, or None when it may."""
    if is_loopback(settings.host) or settings.tokens:
        return None
    return (
        f"refusing to listen on {settings.host!r} without authentication: the gateway runs arbitrary "
        "scripts for its callers. Set SCRIPTBUS_API_TOKENS to a comma-separated list of bearer tokens, "
        "or listen on a loopback address such as 127.0.0.1."
    )


def _unauthorized() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="a valid bearer token is required (Authorization: Bearer <token>)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _configured_caller(settings: GatewaySettings, given: str) -> Caller | None:
    """The admin caller of a `SCRIPTBUS_API_TOKENS` token, or None."""
    ok = False
    # Compare against every token so the time taken does not tell which one nearly matched.
    for token in settings.tokens:
        ok |= hmac.compare_digest(given.encode(), token.encode())
    if not ok:
        return None
    return Caller(Role.admin, name="", token_id="env:" + token_digest(given)[:16])


async def current_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """FastAPI dependency: who is calling, or a 401. Kept on `request.state.caller`."""
    settings: GatewaySettings = request.app.state.settings
    if not settings.tokens:
        caller = ANONYMOUS
    else:
        given = credentials.credentials if credentials is not None else ""
        found = _configured_caller(settings, given) if given else None
        if found is None:
            raise _unauthorized()
        caller = found
    request.state.caller = caller
    return caller


def need(role: Role) -> Callable[..., Awaitable[Caller]]:
    """FastAPI dependency factory: the caller, or a 403 when their role is below `role`."""

    async def dependency(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        if not caller.may(role):
            raise HTTPException(
                status_code=403, detail=f"this needs the {role.value!r} role; the token has {caller.role.value!r}"
            )
        return caller

    return dependency


# Kept for the routers that only need an authenticated caller.
require_token = current_caller


async def require_token_off_loopback(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """FastAPI dependency for /metrics: a scraper on this machine needs no token, any other caller does
    (when tokens are configured)."""
    client = request.client
    if client is not None and is_loopback(client.host):
        return
    await current_caller(request, credentials)
