"""API tokens as a test makes and uses them over HTTP."""

from __future__ import annotations

from typing import Any

import httpx


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_token(client: httpx.AsyncClient, role: str, name: str, as_token: str | None = None) -> dict[str, Any]:
    """POST /api/v1/tokens (as `as_token`, else anonymously); it must be made. The body holds `token`."""
    response = await client.post(
        "/api/v1/tokens", json={"role": role, "name": name}, headers=bearer(as_token) if as_token else {}
    )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made
