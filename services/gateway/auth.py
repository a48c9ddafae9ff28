"""Who may call the API and what they may do: bearer tokens carry a role, routes name the role they need.

Roles are ordered: `read` sees runs, output, commands, workflows and the fleet; `run` may also start and
stop runs and workflow runs; `admin` may also manage saved commands, workflows, tokens, secrets and
executors, and delete runs.

Tokens come from two places: `SCRIPTBUS_API_TOKENS` (admin tokens named `admin`, for start-up and break
glass) and `POST /api/v1/tokens` (any role, named, revocable; looked up by digest in the gateway's token
table). Tokens are required when either kind exists. A gateway on loopback with neither serves every
caller as an anonymous admin named `local` (a single-user machine); once the first API token exists,
every caller needs one. A gateway that listens beyond loopback needs `SCRIPTBUS_API_TOKENS`, checked
before it starts.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from scriptbus.events.tokens import Role, token_digest
from scriptbus.gateway.cross_site import SAFE_METHODS
from scriptbus.gateway.settings import GatewaySettings
from scriptbus.gateway.token_table import TokenTable

__all__ = ["Caller", "Role", "current_caller", "need", "request_token", "token_digest"]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`SCRIPTBUS_API_TOKENS` or `POST /api/v1/tokens`); required once any token exists.",
)

# The web console keeps the token it signed in with in this cookie (HttpOnly: the page's scripts never
# read it). A cookie is sent by the browser on any site's request, so an unsafe method authenticated by
# it must also carry CONSOLE_HEADER, which only a same-origin script can set (a cross-site form cannot,
# and a cross-site fetch with a custom header needs a CORS preflight the gateway never grants).
CONSOLE_COOKIE = "scriptbus_console"
CONSOLE_HEADER = "x-scriptbus-console"

# The names that go into events for callers without a token of their own.
ENV_TOKEN_NAME = "admin"
ANONYMOUS_NAME = "local"


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request. `token_id` is None for the anonymous loopback caller;
    `name` goes into the events the caller causes (`requested_by`, `stopped_by`, …)."""

    role: Role
    name: str = ""
    token_id: str | None = None

    def may(self, role: Role) -> bool:
        return self.role.rank >= role.rank

    @property
    def scope(self) -> str:
        """What keeps one caller's idempotency keys apart from another's."""
        return self.token_id or "anonymous"


ANONYMOUS = Caller(Role.admin, name=ANONYMOUS_NAME)


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
    """Why the gateway must not start with these settings, or None when it may.

    API tokens do not count as a way in here: they live in the stream (not readable before start) and can
    be revoked, so an exposed gateway keeps a `SCRIPTBUS_API_TOKENS` admin token as its way in."""
    if is_loopback(settings.host) or settings.tokens:
        return None
    return (
        f"refusing to listen on {settings.host!r} without authentication: the gateway runs arbitrary "
        "scripts for its callers. Set SCRIPTBUS_API_TOKENS to a comma-separated list of bearer tokens, "
        "or listen on a loopback address such as 127.0.0.1."
    )


def tokens_required(settings: GatewaySettings, table: TokenTable | None) -> bool:
    """True when every caller must present a token: any configured or live API token, or an exposed address."""
    return bool(settings.tokens) or (table is not None and table.has_active()) or not is_loopback(settings.host)


def unauthorized(detail: str = "a valid bearer token is required (Authorization: Bearer <token>)") -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _configured_caller(settings: GatewaySettings, given: str) -> Caller | None:
    """The admin caller of a `SCRIPTBUS_API_TOKENS` token, or None."""
    ok = False
    # Compare against every token so the time taken does not tell which one nearly matched.
    for token in settings.tokens:
        ok |= hmac.compare_digest(given.encode(), token.encode())
    if not ok:
        return None
    return Caller(Role.admin, name=ENV_TOKEN_NAME, token_id="env:" + token_digest(given)[:16])


def _table(request: Request) -> TokenTable | None:
    gateway = getattr(request.app.state, "gateway", None)
    return None if gateway is None else gateway.tokens


def identify(request: Request, given: str) -> Caller | None:
    """The caller a request is, or None when it must be refused (401)."""
    settings: GatewaySettings = request.app.state.settings
    table = _table(request)
    if given:
        found = _configured_caller(settings, given)
        if found is None and table is not None:
            entry = table.find(given)
            if entry is not None:
                found = Caller(entry.role, name=entry.caller_name, token_id=entry.token_id)
        if found is not None:
            return found
    if tokens_required(settings, table):
        return None
    host = request.headers.get("host", "")
    if not is_loopback(urlsplit("//" + host).hostname or ""):
        # A page whose name was rebound to 127.0.0.1 reaches this gateway as its own origin, with its own
        # name as Host; anonymous access is for callers that name this machine.
        raise HTTPException(
            status_code=403,
            detail=f"without tokens this gateway answers only requests to a loopback name (127.0.0.1, localhost), "
            f"not Host {host!r}: create a token (scriptbus tokens create) to reach it by other names",
        )
    # No token needed here: one that is not (or no longer) valid is ignored like a missing one.
    return ANONYMOUS


def request_token(request: Request, bearer: str) -> str:
    """The token a request authenticates with: its bearer header, else the console's cookie.

    Raises 403 for an unsafe method authenticated by the cookie alone without the console's header
    (a cross-site request forgery, or a client that should send a bearer header instead)."""
    if bearer:
        return bearer
    cookie = request.cookies.get(CONSOLE_COOKIE, "")
    if cookie and request.method not in SAFE_METHODS and request.headers.get(CONSOLE_HEADER) != "1":
        raise HTTPException(
            status_code=403,
            detail=f"a request authenticated by the console's cookie must send the header {CONSOLE_HEADER}: 1",
        )
    return cookie


def _given(credentials: HTTPAuthorizationCredentials | None) -> str:
    return credentials.credentials if credentials is not None else ""


async def current_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """FastAPI dependency: who is calling (bearer header or console cookie), or a 401. Kept on
    `request.state.caller`."""
    caller = identify(request, request_token(request, _given(credentials)))
    if caller is None:
        raise unauthorized()
    request.state.caller = caller
    return caller


def _role_dependency(role: Role) -> Callable[..., Awaitable[Caller]]:
    async def dependency(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        if not caller.may(role):
            raise HTTPException(
                status_code=403, detail=f"this needs the {role.value!r} role; the token has {caller.role.value!r}"
            )
        return caller

    # Read by the test that checks every /api/v1 route names its role.
    dependency.required_role = role  # type: ignore[attr-defined]
    return dependency


# One dependency object per role, so FastAPI runs each at most once per request.
_DEPENDENCIES = {role: _role_dependency(role) for role in Role}


def need(role: Role) -> Callable[..., Awaitable[Caller]]:
    """FastAPI dependency factory: the caller, or a 403 when their role is below `role`."""
    return _DEPENDENCIES[role]


# Route parameters that both require a role and hand the caller (for `*_by` in events) to the route.
Reader = Annotated[Caller, Depends(need(Role.read))]
Runner = Annotated[Caller, Depends(need(Role.run))]
Admin = Annotated[Caller, Depends(need(Role.admin))]


async def require_token_off_loopback(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """FastAPI dependency for /metrics: a scraper on this machine needs no token, any other caller does
    (when tokens are required)."""
    client = request.client
    if client is not None and is_loopback(client.host):
        return
    await current_caller(request, credentials)
