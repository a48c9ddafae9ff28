"""HTTP routes for API tokens: make one (shown once), list them, revoke one. Admin only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from scriptbus.gateway import token_actions
from scriptbus.gateway.auth import Admin, Role, need
from scriptbus.gateway.content_type import require_json
from scriptbus.gateway.openapi import INVALID, NOT_JSON, UNAUTHORIZED, UNAVAILABLE, conflict, not_found
from scriptbus.gateway.state import Gateway, get_gateway
from scriptbus.gateway.token_schemas import NewToken, TokenCreate, TokenList

PREFIX = "/api/v1/tokens"
router = APIRouter(prefix=PREFIX, tags=["tokens"], dependencies=[Depends(need(Role.admin))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
_LOCKOUT = "The change would leave tokens required but no admin token to manage them, or the name is taken."


@router.post(
    "",
    status_code=201,
    response_model=NewToken,
    summary="Create a token",
    dependencies=[Depends(require_json)],
    responses={**UNAUTHORIZED, **conflict(_LOCKOUT), **NOT_JSON, **INVALID, **UNAVAILABLE},
)
async def create_token(body: TokenCreate, gw: GatewayDep, caller: Admin) -> Response:
    """A new bearer token with `role` and `name`. The answer holds `token` this once: the gateway keeps only
    its SHA-256. It works at once on this gateway. Once any token exists, every caller needs one."""
    token = await token_actions.create_token(gw, body, caller.name)
    return Response(
        token.model_dump_json(),
        status_code=201,
        media_type="application/json",
        # A token must not stay in a cache on its way back.
        headers={"Location": f"{PREFIX}/{token.id}", "Cache-Control": "no-store"},
    )


@router.get("", response_model=TokenList, summary="List tokens", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_tokens(
    gw: GatewayDep,
    revoked: Annotated[bool, Query(description="Also list revoked tokens.")] = False,
) -> TokenList:
    """Tokens oldest first: id, role, name, who made them and when; never the token or its digest."""
    return TokenList(items=await token_actions.list_tokens(gw, revoked))


@router.delete(
    "/{token_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke a token",
    responses={**UNAUTHORIZED, **not_found("token"), **conflict(_LOCKOUT), **UNAVAILABLE},
)
async def revoke_token(
    token_id: Annotated[uuid.UUID, Path(description="The token's id (not the token).")], gw: GatewayDep, caller: Admin
) -> Response:
    """Answers once this gateway refuses the token; other gateways follow within moments. Revoking a
    revoked token changes nothing."""
    await token_actions.revoke_token(gw, str(token_id), caller.name)
    return Response(status_code=204)
