"""The REST API as the command line sees it: one call per endpoint, every failure mapped to a
`ClientError` that carries the one line to print and the exit status."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Any, Self
from urllib.parse import quote

import httpx

DEFAULT_API = "http://127.0.0.1:8080"
PREFIX = "/api/v1"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Time to connect and between bytes for ordinary calls; live streams wait for bytes without a limit.
_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_STREAM_TIMEOUT = httpx.Timeout(None, connect=5.0)
# FastAPI's answer for a path with no route, as opposed to "run … not found" from a route.
_NO_ROUTE = "Not Found"


class ClientError(Exception):
    """A failure to report as one line on stderr, then exit with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        # The HTTP status behind it, when there was an answer.
        self.status = status


class Unreachable(ClientError):
    """The API did not answer at all (connection refused, DNS, timeout): exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class NotFound(ClientError):
    """A 404; `no_route` is True when the server has no such endpoint (an older gateway)."""

    def __init__(self, message: str, no_route: bool) -> None:
        super().__init__(message, exit_code=1, status=404)
        self.no_route = no_route


def error_detail(response: httpx.Response) -> str:
    """The server's `detail` as one line: a string as is, a 422's field list as `field: reason; …`."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0] if text else f"HTTP {response.status_code} {response.reason_phrase}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if not isinstance(item, dict):
                parts.append(str(item))
                continue
            loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path", "header")]
            msg = str(item.get("msg", "invalid"))
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        return "; ".join(parts)
    return f"HTTP {response.status_code} {response.reason_phrase}"


def is_full_id(value: str) -> bool:
    return bool(UUID_RE.match(value))


class Api:
    """A synchronous client of one gateway. Use as a context manager so the connection pool closes."""

    def __init__(self, base_url: str = DEFAULT_API, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # Kept so that a thread of our own can open its own client to the same gateway.
        self.token = token
        headers = {"User-Agent": "scriptbus-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=_TIMEOUT)
        # Set once the API has answered anything: a later failure to connect is then worth retrying.
        self.answered = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transport_errors(self) -> Iterator[None]:
        """Turn httpx's transport failures into `Unreachable` with the line users should see."""
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unreachable(
                f"cannot reach the API at {self.base_url}: {_reason(exc)}; is `scriptbus up` running?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise Unreachable(f"the API at {self.base_url} did not answer in time: {_reason(exc)}") from exc
        except httpx.TransportError as exc:
            raise Unreachable(f"lost the connection to the API at {self.base_url}: {_reason(exc)}") from exc

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; a 4xx/5xx becomes a `ClientError` with the server's detail."""
        with self.transport_errors():
            response = self._http.request(method, PREFIX + path, **kwargs)
        self.answered = True
        check(response)
        return response

    def _create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        # The key makes a retry after a dropped connection safe: the server answers it with the
        # original response instead of creating a second resource.
        headers = {"Idempotency-Key": f"cli-{uuid.uuid4()}"}
        for attempt in range(2):
            try:
                with self.transport_errors():
                    response = self._http.post(PREFIX + path, json=body, headers=headers)
                self.answered = True
                break
            except Unreachable as exc:
                # Only a request that may have been sent is worth repeating; refused means not sent.
                if attempt or isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise
        check(response)
        return _json(response)

    @contextlib.contextmanager
    def stream(
        self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """Open a long-lived GET (live output, events); the caller reads it and handles transport
        errors itself, so it can reconnect."""
        with self._http.stream(
            "GET", PREFIX + path, params=params, headers=headers, timeout=_STREAM_TIMEOUT
        ) as response:
            self.answered = True
            if response.is_error:
                response.read()
                check(response)
            yield response

    # -- runs -----------------------------------------------------------------------------------

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._create("/runs", body)

    def run_command(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._create(f"/commands/{_seg(name)}/runs", body)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return _json(self.request("GET", f"/runs/{_seg(run_id)}"))

    def list_runs(self, **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        return _json(self.request("GET", "/runs", params=query))

    def stop_run(self, run_id: str) -> dict[str, Any]:
        return _json(self.request("POST", f"/runs/{_seg(run_id)}/stop"))

    def delete_run(self, run_id: str) -> None:
        self.request("DELETE", f"/runs/{_seg(run_id)}")

    def output(self, run_id: str, stream: str | None = None, offset: int = 0) -> bytes:
        params: dict[str, Any] = {"offset": offset}
        if stream:
            params["stream"] = stream
        return self.request("GET", f"/runs/{_seg(run_id)}/output", params=params).content

    def resolve_run(self, ref: str) -> str:
        """A full run id for `ref`, which may be the start of one (as `ps` shows them)."""
        if is_full_id(ref):
            return ref.lower()
        prefix = ref.lower()
        if not re.fullmatch(r"[0-9a-f-]+", prefix):
            raise ClientError(f"{ref!r} is not a run id (ids look like 3f2a9c1e-…)")
        matches: list[str] = []
        offset = 0
        while True:
            page = self.list_runs(limit=1000, offset=offset)
            items = page.get("items", [])
            matches += [r["id"] for r in items if str(r["id"]).startswith(prefix)]
            offset += len(items)
            if not items or offset >= int(page.get("total", 0)):
                break
        if not matches:
            raise ClientError(f"no run id starts with {ref!r}")
        if len(matches) > 1:
            shown = ", ".join(m[:13] for m in matches[:5]) + (", …" if len(matches) > 5 else "")
            raise ClientError(f"run id {ref!r} is ambiguous: {len(matches)} runs match ({shown})")
        return matches[0]

    # -- commands -------------------------------------------------------------------------------

    def list_commands(self, q: str | None = None, limit: int = 200, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if q:
            params["q"] = q
        return _json(self.request("GET", "/commands", params=params))

    def get_command(self, ref: str) -> dict[str, Any]:
        return _json(self.request("GET", f"/commands/{_seg(ref)}"))

    def create_command(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._create("/commands", body)

    def replace_command(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        return _json(self.request("PUT", f"/commands/{_seg(ref)}", json=body))

    def delete_command(self, ref: str) -> None:
        self.request("DELETE", f"/commands/{_seg(ref)}")

    # -- projects and workflows (seed 004's verbs) ------------------------------------------------

    def import_project(self, document: Any, replace: bool = False) -> dict[str, Any]:
        """spad create (or update with `replace`): the project after the change, as seed 004's JSON."""
        params = {"mode": "replace"} if replace else None
        return _json(self.request("POST", "/projects/import", params=params, json=document))

    def remove_definitions(self, document: Any) -> dict[str, Any] | None:
        """spad delete: the project after the change, or None when the emptied project went with it."""
        response = self.request("POST", "/projects/remove", json=document)
        return None if response.status_code == 204 else _json(response)

    def export_project(self, project: str, workflow: str | None = None, task: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("workflow", workflow), ("task", task)) if v is not None}
        return _json(self.request("GET", f"/projects/{_seg(project)}/export", params=params))

    def start_workflow_run(self, project: str, workflow: str, task: str | None = None) -> dict[str, Any]:
        body = {"task": task} if task is not None else {}
        return self._create(f"/projects/{_seg(project)}/workflows/{_seg(workflow)}/runs", body)

    def get_workflow_run(self, wfrun_id: str) -> dict[str, Any]:
        return _json(self.request("GET", f"/workflow-runs/{_seg(wfrun_id)}"))

    def list_workflow_runs(self, **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        return _json(self.request("GET", "/workflow-runs", params=query))

    def stop_workflow_run(self, wfrun_id: str) -> dict[str, Any]:
        return _json(self.request("POST", f"/workflow-runs/{_seg(wfrun_id)}/stop"))

    def retry_workflow_run(self, wfrun_id: str) -> dict[str, Any]:
        return self._create(f"/workflow-runs/{_seg(wfrun_id)}/retry", {})

    def hold_step(self, wfrun_id: str, step: str, hold: bool) -> dict[str, Any]:
        method = "POST" if hold else "DELETE"
        return _json(self.request(method, f"/workflow-runs/{_seg(wfrun_id)}/steps/{_seg(step)}/hold"))

    # -- tokens ---------------------------------------------------------------------------------

    def create_token(self, role: str, name: str) -> dict[str, Any]:
        # No Idempotency-Key: a stored response would keep the token itself for a day.
        return _json(self.request("POST", "/tokens", json={"role": role, "name": name}))

    def list_tokens(self, revoked: bool = False) -> dict[str, Any]:
        return _json(self.request("GET", "/tokens", params={"revoked": "true"} if revoked else None))

    def revoke_token(self, token_id: str) -> None:
        self.request("DELETE", f"/tokens/{_seg(token_id)}")

    # -- fleet ----------------------------------------------------------------------------------

    def executors(self) -> dict[str, Any]:
        return _json(self.request("GET", "/executors"))


def check(response: httpx.Response) -> None:
    """Raise the `ClientError` a 4xx/5xx stands for."""
    if not response.is_error:
        return
    detail = error_detail(response)
    if response.status_code == 404:
        raise NotFound(detail, no_route=detail == _NO_ROUTE)
    if response.status_code == 401:
        raise ClientError(f"{detail} (pass --token or set SCRIPTBUS_TOKEN)", status=401)
    if response.status_code >= 500:
        # Not the caller's mistake: say it is the server's, with the status, to help whoever looks into it.
        detail = f"the API answered {response.status_code}: {detail}"
    raise ClientError(detail, status=response.status_code)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise ClientError(f"the API answered {response.status_code} with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise ClientError("the API answered with unexpected JSON")
    return body


def _seg(value: str) -> str:
    """One path segment: a command name may hold dots, never a slash that changes the route."""
    return quote(value, safe="")


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
