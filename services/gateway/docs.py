"""`/docs` (Swagger UI) and `/openapi.json`, under the same rule as the API, with every asset served here.

The page loads nothing from elsewhere, so it works offline. A browser cannot send a bearer header to
`/docs`: while tokens are required it needs the console's sign-in cookie, or answers 401 and says how to
read the schema instead.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from scriptbus.gateway.auth import Role, identify, request_token, unauthorized

router = APIRouter(include_in_schema=False)

ASSETS = "/docs/assets"
# name -> media type; only what the page uses is served.
_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


@cache
def _assets_dir() -> Path:
    """The Swagger UI files of the `swagger-ui-bundle` package (its folder is named for the UI's version)."""
    vendor = Path(str(resources.files("swagger_ui_bundle").joinpath("vendor")))
    found = sorted(vendor.glob("swagger-ui-*"))
    if not found:
        raise FileNotFoundError(f"no swagger-ui-* folder in {vendor}")
    return found[-1]


def _authorize(request: Request, what: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    # A browser signed in to the console sends its cookie, which opens /docs too.
    caller = identify(request, request_token(request, given.strip() if scheme.lower() == "bearer" else ""))
    if caller is None:
        raise unauthorized(
            f"{what} needs a valid bearer token while tokens are required (Authorization: Bearer <token>); "
            "sign in at / first, or read the schema with e.g. "
            "`curl -H 'Authorization: Bearer <token>' <gateway>/openapi.json`"
        )
    if not caller.may(Role.read):
        raise HTTPException(status_code=403, detail="this needs the 'read' role")


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    _authorize(request, "/openapi.json")
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    _authorize(request, "/docs")
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="scriptbus API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=None,
    )


@router.get(ASSETS + "/{name}")
async def asset(name: str) -> FileResponse:
    """The UI's own files: public, they hold nothing about this installation."""
    media_type = _FILES.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no asset {name!r}")
    return FileResponse(_assets_dir() / name, media_type=media_type, headers={"Cache-Control": "max-age=86400"})
