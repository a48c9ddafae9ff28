"""Other web sites may not drive the API through a visitor's browser.

A browser sends the console's cookie with requests any page makes, and on loopback without tokens the API
needs no credentials at all: a cross-site form POSTing an empty body to `/api/v1/commands/deploy/runs`
would run a command. Browsers say where a request comes from (`Sec-Fetch-Site`, else `Origin`), so an
unsafe method from another site is refused here, before routing. Programs (the CLI, curl) send neither
header and are not affected.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# `none` is a request the user made (typed URL, bookmark); `same-origin` is the console itself.
_OWN = frozenset({b"same-origin", b"none"})


def cross_site_reason(method: str, headers: dict[bytes, bytes]) -> str | None:
    """Why a request is a forgery from another site, or None when it is not (or cannot tell)."""
    if method in SAFE_METHODS:
        return None
    fetch_site = headers.get(b"sec-fetch-site")
    if fetch_site is not None:
        return None if fetch_site in _OWN else f"Sec-Fetch-Site: {fetch_site.decode('latin-1')}"
    origin = headers.get(b"origin")
    if origin is None:
        return None
    if origin == b"null" or urlsplit(origin.decode("latin-1")).netloc != headers.get(b"host", b"").decode("latin-1"):
        return f"Origin {origin.decode('latin-1')} is not this gateway"
    return None


class CrossSiteGuard:
    """ASGI middleware: 403 for a POST, PUT, PATCH or DELETE a browser made from another site."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = cross_site_reason(scope["method"], dict(scope["headers"]))
            if reason is not None:
                body = json.dumps({"detail": f"refused a request from another web site ({reason})"}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 403, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
