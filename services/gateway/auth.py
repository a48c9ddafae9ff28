"""Who may call the API: bearer tokens, required whenever the gateway listens beyond loopback."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from scriptbus.gateway.settings import GatewaySettings

_bearer = HTTPBearer(
    auto_error=False,
    description="One of the tokens in `SCRIPTBUS_API_TOKENS`; required on /api routes when that is set.",
)


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


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """FastAPI dependency: a 401 unless the request carries a configured bearer token (when any is)."""
    settings: GatewaySettings = request.app.state.settings
    tokens = settings.tokens
    if not tokens:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    # Compare against every token so the time taken does not tell which one nearly matched.
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(given, token.encode())
    if not ok:
        raise HTTPException(
            status_code=401,
            detail="a valid bearer token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_token_off_loopback(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """FastAPI dependency for /metrics: a scraper on this machine needs no token, any other caller does
    (when tokens are configured)."""
    client = request.client
    if client is not None and is_loopback(client.host):
        return
    await require_token(request, credentials)
