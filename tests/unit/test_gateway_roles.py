"""Every /api/v1 route names the role it needs, and the token table answers who a token is."""

from __future__ import annotations

from typing import Any

from fastapi.routing import iter_route_contexts

from scriptbus.events.tokens import Role, TokenCreated, TokenRevoked, token_digest
from scriptbus.gateway.app import create_app
from scriptbus.gateway.auth import tokens_required
from scriptbus.gateway.settings import GatewaySettings
from scriptbus.gateway.token_table import TokenTable

R, X, A = Role.read, Role.run, Role.admin
# What each route needs. A new route must be added here with the role it needs: the test fails otherwise.
EXPECTED: dict[tuple[str, str], Role] = {
    ("GET", "/api/v1/runs"): R,
    ("GET", "/api/v1/runs/{run_id}"): R,
    ("GET", "/api/v1/runs/{run_id}/output"): R,
    ("GET", "/api/v1/runs/{run_id}/output/chunks"): R,
    ("GET", "/api/v1/runs/{run_id}/events"): R,
    ("POST", "/api/v1/runs"): X,
    ("POST", "/api/v1/runs/{run_id}/stop"): X,
    # Deleting forgets output others may need.
    ("DELETE", "/api/v1/runs/{run_id}"): A,
    ("GET", "/api/v1/commands"): R,
    ("GET", "/api/v1/commands/{ref}"): R,
    ("POST", "/api/v1/commands"): A,
    ("PUT", "/api/v1/commands/{ref}"): A,
    ("DELETE", "/api/v1/commands/{ref}"): A,
    ("POST", "/api/v1/commands/{ref}/runs"): X,
    ("GET", "/api/v1/executors"): R,
    ("POST", "/api/v1/tokens"): A,
    ("GET", "/api/v1/tokens"): A,
    ("DELETE", "/api/v1/tokens/{token_id}"): A,
    ("PUT", "/api/v1/secrets/{name}"): A,
    ("DELETE", "/api/v1/secrets/{name}"): A,
    ("GET", "/api/v1/secrets"): R,
    ("GET", "/api/v1/secrets/{name}"): R,
    ("PUT", "/api/v1/files/{name:path}"): A,
    ("DELETE", "/api/v1/files/{name:path}"): A,
    ("GET", "/api/v1/files"): R,
    ("GET", "/api/v1/files/{name:path}"): R,
    ("GET", "/api/v1/runs/{run_id}/artifacts"): R,
    ("GET", "/api/v1/runs/{run_id}/artifacts/{path:path}"): R,
    ("POST", "/api/v1/projects/import"): A,
    ("POST", "/api/v1/projects/remove"): A,
    ("GET", "/api/v1/projects/{project}/export"): R,
    ("GET", "/api/v1/projects"): R,
    ("GET", "/api/v1/projects/{project}"): R,
    ("GET", "/api/v1/projects/{project}/workflows/{workflow}"): R,
    ("PUT", "/api/v1/projects/{project}/workflows/{workflow}"): A,
    ("POST", "/api/v1/projects/{project}/workflows"): A,
    ("DELETE", "/api/v1/projects/{project}/workflows/{workflow}"): A,
    ("POST", "/api/v1/projects/{project}/workflows/{workflow}/runs"): X,
    ("GET", "/api/v1/workflow-runs"): R,
    ("GET", "/api/v1/workflow-runs/{wfrun_id}"): R,
    ("GET", "/api/v1/workflow-runs/{wfrun_id}/events"): R,
    ("POST", "/api/v1/workflow-runs/{wfrun_id}/stop"): X,
    ("POST", "/api/v1/workflow-runs/{wfrun_id}/retry"): X,
    ("POST", "/api/v1/workflow-runs/{wfrun_id}/steps/{step}/hold"): X,
    ("DELETE", "/api/v1/workflow-runs/{wfrun_id}/steps/{step}/hold"): X,
    ("POST", "/api/v1/fanouts"): X,
    ("GET", "/api/v1/fanouts"): R,
    ("GET", "/api/v1/fanouts/{fanout_id}"): R,
    ("POST", "/api/v1/fanouts/{fanout_id}/stop"): X,
    ("POST", "/api/v1/fanouts/{fanout_id}/retry"): X,
    # A schedule runs code later, on its own: only admins make or change one.
    ("GET", "/api/v1/schedules"): R,
    ("GET", "/api/v1/schedules/{ref}"): R,
    ("POST", "/api/v1/schedules"): A,
    ("PUT", "/api/v1/schedules/{ref}"): A,
    ("PATCH", "/api/v1/schedules/{ref}"): A,
    ("DELETE", "/api/v1/schedules/{ref}"): A,
    ("POST", "/api/v1/schedules/{ref}/pause"): A,
    ("POST", "/api/v1/schedules/{ref}/resume"): A,
}


def _roles(dependant: Any) -> list[Role]:
    found: list[Role] = []
    for dep in dependant.dependencies:
        role = getattr(dep.call, "required_role", None)
        if isinstance(role, Role):
            found.append(role)
        found.extend(_roles(dep))
    return found


def _api_routes() -> dict[tuple[str, str], Role | None]:
    routes: dict[tuple[str, str], Role | None] = {}
    for context in iter_route_contexts(create_app(GatewaySettings()).routes):
        path = context.path or ""
        if not path.startswith("/api/"):
            continue
        dependant = getattr(context.route, "dependant", None)
        assert dependant is not None, path
        roles = _roles(dependant)
        for method in context.methods or ():
            routes[(method, path)] = max(roles, key=lambda r: r.rank) if roles else None
    return routes


def test_every_api_route_names_its_role() -> None:
    routes = _api_routes()
    unnamed = sorted(route for route, role in routes.items() if role is None)
    assert not unnamed, f"these /api routes need no role: {unnamed}; add Depends(need(Role.x))"
    unlisted = sorted(set(routes) - set(EXPECTED))
    assert not unlisted, f"add these routes, with the role they need, to EXPECTED: {unlisted}"
    assert routes == EXPECTED


def _created(table: TokenTable, token: str, role: Role, name: str, seq: int) -> str:
    event = TokenCreated(
        token_id=f"00000000-0000-4000-8000-{seq:012d}", digest=token_digest(token), role=role, name=name
    )
    table.apply(event, seq)
    return event.token_id


def test_the_token_table_finds_live_tokens_by_digest_only() -> None:
    table = TokenTable()
    ci = _created(table, "sb_ci", Role.run, "ci", 3)
    anon = _created(table, "sb_anon", Role.read, "", 7)
    found = table.find("sb_ci")
    assert found is not None and (found.role, found.caller_name) == (Role.run, "ci")
    # A token without a name is named for its id in the events it causes.
    assert (table.find("sb_anon") or found).caller_name == "token-" + anon[:8]
    assert table.find(token_digest("sb_ci")) is None and table.find("sb_c") is None
    table.apply(TokenRevoked(token_id=ci), 9)
    assert table.find("sb_ci") is None
    assert [e.name for e in table.active()] == [""]
    assert table.position == 9


async def test_waiting_for_a_position_ends_when_folded_or_bounded() -> None:
    table = TokenTable()
    assert await table.wait_for(0, 0.01)
    assert not await table.wait_for(5, 0.01)
    _created(table, "sb_x", Role.admin, "x", 5)
    assert await table.wait_for(5, 0.01)


def test_tokens_are_required_once_any_exists_and_always_off_loopback() -> None:
    loopback = GatewaySettings().model_copy(update={"host": "127.0.0.1", "api_tokens": ""})
    table = TokenTable()
    assert not tokens_required(loopback, table)
    assert tokens_required(loopback.model_copy(update={"api_tokens": "s3cret"}), table)
    assert tokens_required(loopback.model_copy(update={"host": "0.0.0.0"}), table)
    ci = _created(table, "sb_ci", Role.admin, "ci", 1)
    assert tokens_required(loopback, table)
    # Once every token is revoked, the single-user loopback default is back.
    table.apply(TokenRevoked(token_id=ci), 2)
    assert not tokens_required(loopback, table)
