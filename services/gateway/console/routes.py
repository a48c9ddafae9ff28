"""The console's page and static files, and its sign-in: a token checked once and kept in a cookie.

The cookie is HttpOnly (the page's scripts never read the token), SameSite=Strict, Path=/ and Secure over
https; `auth.request_token` accepts it for /api/v1 and refuses an unsafe method that does not carry the
console's header (cross-site request forgery)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from scriptbus.gateway.auth import (
    CONSOLE_COOKIE,
    CONSOLE_HEADER,
    Caller,
    identify,
    request_token,
    tokens_required,
    unauthorized,
)
from scriptbus.gateway.content_type import require_json

router = APIRouter(include_in_schema=False)

STATIC_PREFIX = "/console/static"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Everything the page loads comes from here; no inline script, no frame of it elsewhere (clickjacking).
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files, changed with each release: revalidate rather than serve a stale module.
    "Cache-Control": "no-cache",
}
# A signed-in browser keeps its token this long (a day's work) unless it signs out first.
COOKIE_MAX_AGE_S = 12 * 3600


@cache
def static_dir() -> Path:
    return Path(str(resources.files("scriptbus.gateway.console").joinpath("static"))).resolve()


def _file(path: Path) -> FileResponse:
    media_type = _MEDIA_TYPES.get(path.suffix)
    if media_type is None or not path.is_file():
        raise HTTPException(status_code=404, detail="no such console file")
    return FileResponse(path, media_type=media_type, headers=_HEADERS)


@router.get("/")
async def index() -> FileResponse:
    return _file(static_dir() / "index.html")


@router.get(STATIC_PREFIX + "/{name:path}")
async def static(name: str) -> FileResponse:
    root = static_dir()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise HTTPException(status_code=404, detail="no such console file")
    return _file(path)


class Whoami(BaseModel):
    name: str = Field(description="The caller's name (`local` for the anonymous loopback caller).")
    role: str
    anonymous: bool = Field(description="True when no token is needed here (loopback, no tokens): no sign-in.")


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The characters a cookie value holds unquoted; our tokens and SCRIPTBUS_API_TOKENS' sensible ones fit.
    token: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9._~+/=-]+$", description="An API token.")


def _whoami(caller: Caller) -> Whoami:
    return Whoami(name=caller.name, role=caller.role.value, anonymous=caller.token_id is None)


def _require_console_header(request: Request) -> None:
    # Signing in or out from another site (login CSRF) is refused like any cookie-borne unsafe request.
    if request.headers.get(CONSOLE_HEADER) != "1":
        raise HTTPException(status_code=403, detail=f"the console's requests send the header {CONSOLE_HEADER}: 1")


@router.get("/console/whoami", response_model=Whoami)
async def whoami(request: Request) -> Whoami:
    """Who the console is signed in as (cookie or bearer), or a 401 when it must show the sign-in form."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    caller = identify(request, request_token(request, given.strip() if scheme.lower() == "bearer" else ""))
    if caller is None:
        raise unauthorized("sign in with an API token")
    return _whoami(caller)


@router.post(
    "/console/session",
    response_model=Whoami,
    dependencies=[Depends(require_json), Depends(_require_console_header)],
)
async def sign_in(body: SignIn, request: Request, response: Response) -> Whoami:
    """Check the token and keep it in the console's cookie; a 401 when it is not a valid token."""
    caller = identify(request, body.token)
    gateway = getattr(request.app.state, "gateway", None)
    required = tokens_required(request.app.state.settings, None if gateway is None else gateway.tokens)
    if caller is None or (required and caller.token_id is None):
        raise unauthorized("this token is not valid (unknown, revoked or mistyped)")
    if caller.token_id is None:
        # No tokens here: every caller is the anonymous admin, nothing to keep.
        return _whoami(caller)
    response.set_cookie(
        CONSOLE_COOKIE,
        body.token,
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return _whoami(caller)


@router.delete("/console/session", status_code=204, dependencies=[Depends(_require_console_header)])
async def sign_out(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(
        CONSOLE_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
