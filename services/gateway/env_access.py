"""Who may give a run which environment variables: `PATH` and interpreters' code paths only an admin
(see `scriptbus.events.run_env`). Saved commands and workflow definitions are an admin's already; this
is for the `env` of a run request."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import HTTPException, Request

from scriptbus.events.run_env import admin_only_refusal
from scriptbus.gateway.auth import Caller, Role


def check_run_env(caller: Caller, env: Mapping[str, str]) -> None:
    """A 403 naming `env` and the names when `caller` may not set them."""
    if caller.may(Role.admin):
        return
    why = admin_only_refusal(env)
    if why is not None:
        raise HTTPException(status_code=403, detail=f"body.env: {why}")


def check_request_env(request: Request, env: Mapping[str, str]) -> None:
    """`check_run_env` for the caller `current_caller` found for this request."""
    check_run_env(request.state.caller, env)
