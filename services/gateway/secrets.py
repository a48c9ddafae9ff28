"""Write-only secrets: an admin stores a value once under a name; runs and commands name it; only the
executors can open it. The gateway seals each value with the executors' public key into the secrets
bucket and records who set it as an event; no answer, event or read model ever holds the value.

The value is stored before its `secret.set` event, and removed before its `secret.removed`: a run the
event makes possible finds the value, and a removal takes effect even if its event then fails (the
caller retries, and the next run naming it fails instead of getting an old value).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam
from nacl.public import PublicKey
from pydantic import BaseModel, ConfigDict, Field

from scriptbus.events.secret_box import load_public_key, seal
from scriptbus.events.secrets import SECRET_NAME, SecretRemoved, SecretSet, secret_name_problem, secret_value_problem
from scriptbus.gateway import actions
from scriptbus.gateway.auth import Caller, Role, need
from scriptbus.gateway.content_type import require_json
from scriptbus.gateway.errors import GatewayError, bus_errors, db_errors, invalid_input
from scriptbus.gateway.openapi import INVALID, NOT_JSON, UNAUTHORIZED, UNAVAILABLE, Responses, not_found
from scriptbus.gateway.schemas import Message
from scriptbus.gateway.secret_names import Secret, SecretList, get_secret, list_secrets
from scriptbus.gateway.settings import GatewaySettings
from scriptbus.gateway.state import Gateway, get_gateway

log = logging.getLogger(__name__)

PREFIX = "/api/v1/secrets"
router = APIRouter(prefix=PREFIX, tags=["secrets"])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
SecretName = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=128,
        pattern=SECRET_NAME.pattern,
        description="The secret's name: the environment variable the script gets it in.",
    ),
]
_404 = not_found("secret")
_FORBIDDEN: Responses = {403: {"model": Message, "description": "The token's role is too low (admin needed)."}}
_DISABLED: Responses = {
    503: {
        "model": Message,
        "description": "No public key is configured (SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE), or NATS or PostgreSQL "
        "is unavailable.",
    }
}


class SecretValue(BaseModel):
    """The value to store. It is sealed for the executors at once: nobody reads it back through the API."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": "s3cr3t"}]})

    value: str = Field(description="At most 64 KiB of UTF-8 text, no NUL.")


class SecretsDisabled(GatewayError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__(
            "secrets are not enabled on this gateway: set SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE to the executors' "
            "public key file (scriptbus up does this itself)"
        )


class SecretNotFound(GatewayError):
    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"secret '{name}' not found")


def public_key(settings: GatewaySettings) -> PublicKey | None:
    """The key values are sealed with, or None when none is configured. A bad file stops the start."""
    if not settings.secrets_public_key_file:
        return None
    return load_public_key(Path(settings.secrets_public_key_file))


def _valid_name(name: str) -> str:
    problem = secret_name_problem(name)
    if problem is not None:
        raise invalid_input(("path", "name"), f"Value error, {problem}", name)
    return name


async def set_secret(gw: Gateway, name: str, value: str, caller: Caller) -> tuple[Secret, bool]:
    """Store `value` sealed under `name`; the secret as now listed, and whether it is new."""
    if gw.secrets_key is None:
        raise SecretsDisabled()
    problem = secret_value_problem(value)
    if problem is not None:
        raise invalid_input(("body", "value"), f"Value error, {problem}", "(not shown)")
    with db_errors():
        before = await get_secret(gw.pool, name)
    actions.require_bus(gw)
    with bus_errors(f"store the secret {name!r}"):
        kv = await gw.secrets()
        await kv.put(name, seal(gw.secrets_key, name, value))
    event = SecretSet(name=name, set_by=caller.name)
    seq = await actions.publish(gw, event, "record the secret")
    log.info("secret %s set by %s (seq %d)", name, event.set_by, seq)
    shown = None
    if await actions.readable(gw, seq):
        with db_errors():
            shown = await get_secret(gw.pool, name)
    if shown is None:
        shown = Secret(
            name=name,
            set_at=event.occurred_at,
            set_by=event.set_by,
            created_at=before.created_at if before else event.occurred_at,
            version=before.version + 1 if before else 1,
        )
    return shown, before is None


async def remove_secret(gw: Gateway, name: str, caller: Caller) -> None:
    """Forget secret `name`: its sealed value first, then the record that it exists."""
    with db_errors():
        if await get_secret(gw.pool, name) is None:
            raise SecretNotFound(name)
    actions.require_bus(gw)
    with bus_errors(f"remove the secret {name!r}"):
        kv = await gw.secrets()
        # Purge, not delete: no revision of the sealed value is kept.
        await kv.purge(name)
    event = SecretRemoved(name=name, removed_by=caller.name)
    seq = await actions.publish(gw, event, "record the secret's removal")
    log.info("secret %s removed by %s (seq %d)", name, event.removed_by, seq)
    await actions.readable(gw, seq)


@router.put(
    "/{name}",
    response_model=Secret,
    status_code=200,
    summary="Set a secret",
    dependencies=[Depends(require_json)],
    responses={
        200: {"description": "The secret existed; its value is replaced."},
        201: {"description": "The secret is new.", "model": Secret},
        **UNAUTHORIZED,
        **_FORBIDDEN,
        **NOT_JSON,
        **INVALID,
        **_DISABLED,
    },
)
async def put_secret(
    name: SecretName,
    body: SecretValue,
    gw: GatewayDep,
    response: Response,
    caller: Annotated[Caller, Depends(need(Role.admin))],
) -> Secret:
    """Store the value of secret `name` (admin only): 201 when new, 200 when it replaces the old value.
    Runs started from now on get the new value. The answer never holds the value, nor does any other."""
    secret, new = await set_secret(gw, _valid_name(name), body.value, caller)
    response.status_code = 201 if new else 200
    return secret


@router.get(
    "",
    response_model=SecretList,
    summary="List secrets",
    responses={**UNAUTHORIZED, **_FORBIDDEN, **UNAVAILABLE},
    dependencies=[Depends(need(Role.read))],
)
async def get_secrets(gw: GatewayDep) -> SecretList:
    """Every secret's name, when it was set and by whom, by name. Never a value."""
    with db_errors():
        return SecretList(items=await list_secrets(gw.pool))


@router.get(
    "/{name}",
    response_model=Secret,
    summary="Get a secret's record",
    responses={**UNAUTHORIZED, **_FORBIDDEN, **_404, **UNAVAILABLE},
    dependencies=[Depends(need(Role.read))],
)
async def get_one_secret(name: SecretName, gw: GatewayDep) -> Secret:
    """That the secret exists, when it was set and by whom. Never its value."""
    with db_errors():
        secret = await get_secret(gw.pool, name)
    if secret is None:
        raise SecretNotFound(name)
    return secret


@router.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    summary="Remove a secret",
    responses={**UNAUTHORIZED, **_FORBIDDEN, **_404, **UNAVAILABLE},
)
async def delete_secret(
    name: SecretName, gw: GatewayDep, caller: Annotated[Caller, Depends(need(Role.admin))]
) -> Response:
    """Forget the secret (admin only). Runs queued or started later that name it fail without running;
    commands naming it cannot run until it is set again."""
    await remove_secret(gw, name, caller)
    return Response(status_code=204)
