"""Error responses shared by the routes' OpenAPI documentation."""

from __future__ import annotations

from typing import Any

from scriptbus.gateway.schemas import Message

Responses = dict[int | str, dict[str, Any]]

UNAUTHORIZED: Responses = {
    401: {"model": Message, "description": "Missing, unknown or revoked token."},
    403: {"model": Message, "description": "The token's role may not do this (the message names the role needed)."},
}
UNAVAILABLE: Responses = {
    503: {"model": Message, "description": "NATS or PostgreSQL is unavailable; nothing was changed."}
}
TOO_LARGE: Responses = {413: {"model": Message, "description": "The request as a whole is too large for one event."}}
NOT_JSON: Responses = {415: {"model": Message, "description": "The body is not sent as `application/json`."}}
INVALID: Responses = {
    422: {
        "description": "Invalid input: `detail` lists each field and why. For a reused `Idempotency-Key` "
        "with a different request, `detail` is a string.",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/HTTPValidationError"},
                        {"$ref": "#/components/schemas/Message"},
                    ]
                }
            }
        },
    }
}
IN_PROGRESS = "a request with the same `Idempotency-Key` is still being answered"
REPLAYED_HEADERS = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the same `Idempotency-Key`.",
        "schema": {"type": "string"},
    }
}


def not_found(what: str) -> Responses:
    return {404: {"model": Message, "description": f"No such {what}."}}


def conflict(description: str) -> Responses:
    return {409: {"model": Message, "description": description}}
