"""Request bodies are JSON: a body sent as anything else is refused with a 415 that says what to send."""

from __future__ import annotations

import email.message

from fastapi import Request

from scriptbus.gateway.errors import UnsupportedMediaType


def is_json(content_type: str | None) -> bool:
    """True for `application/json` and `application/<anything>+json`, with or without parameters."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def require_json(request: Request) -> None:
    """Dependency of every route that takes a body: a non-empty body must say it is JSON."""
    # FastAPI has read the body already (it caches it on the request), and would treat a body of any
    # other type as raw bytes, failing later with a 422 that does not say what is wrong.
    if await request.body() and not is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType(request.headers.get("content-type"))
