"""The files store over HTTP: put (streamed, admin), get (streamed), list, delete (admin).

Putting a file is admin work, like saving a command: a stored file is code that later runs (any run may
name it), so whoever may replace `tool.sh` may change what every run using it does. Runs only read files.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import nats.errors
import nats.js.errors
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from nats.js.api import ObjectInfo
from starlette.requests import ClientDisconnect

from scriptbus.events.files import (
    EXECUTABLE_HEADER,
    STORED_BY_HEADER,
    FileDeleted,
    FileEvent,
    FileStored,
    TooLarge,
    delete_object,
    header,
    hex_sha256,
    name_problem,
    object_info,
    read_chunks,
    write_object,
)
from scriptbus.events.publishing import publish_event
from scriptbus.gateway.auth import Admin, Role, need
from scriptbus.gateway.errors import BusUnavailable, GatewayError, RequestTooLarge, invalid_input
from scriptbus.gateway.file_schemas import StoredFile, StoredFileList
from scriptbus.gateway.openapi import INVALID, UNAUTHORIZED, UNAVAILABLE, Responses, not_found
from scriptbus.gateway.schemas import Message
from scriptbus.gateway.state import Gateway, get_gateway

log = logging.getLogger(__name__)

PREFIX = "/api/v1/files"
router = APIRouter(prefix=PREFIX, tags=["files"], dependencies=[Depends(need(Role.read))])

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
NamePath = Annotated[str, Path(description="A relative path such as `tools/deploy.sh` (no `..`, no leading `/`).")]
_404 = not_found("file")
_TOO_LARGE: Responses = {413: {"model": Message, "description": "The file is larger than SCRIPTBUS_FILES_MAX_BYTES."}}
STORE_ERRORS = (nats.errors.Error, OSError)


class FileNotFound(GatewayError):
    status_code = 404


class UploadCutOff(GatewayError):
    status_code = 400


def checked_name(name: str, where: tuple[str, ...] = ("path", "name")) -> str:
    """`name` when it can name a file, else a 422 naming `where`."""
    problem = name_problem(name)
    if problem is not None:
        raise invalid_input(where, f"Value error, the file name {problem}", name)
    return name


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # another client's time format: the listing is still useful without it


def describe(info: ObjectInfo) -> StoredFile:
    return StoredFile(
        name=info.name,
        size=info.size or 0,
        sha256=hex_sha256(info),
        executable=header(info, EXECUTABLE_HEADER) == "true",
        stored_at=_parse_time(info.mtime),
        stored_by=header(info, STORED_BY_HEADER),
    )


def _bus_down(exc: BaseException) -> BusUnavailable:
    return BusUnavailable(f"NATS unavailable: the files store cannot be reached ({exc or type(exc).__name__})")


async def stored(gw: Gateway, bucket: str, name: str) -> ObjectInfo | None:
    try:
        return await object_info(gw.js, bucket, name)
    except STORE_ERRORS as exc:
        raise _bus_down(exc) from exc


async def check_stored(gw: Gateway, names: list[str]) -> None:
    """A 422 naming `files` unless every one of `names` is in the files store."""
    for name in names:
        if await stored(gw, gw.subjects.files_bucket, name) is None:
            raise invalid_input(
                ("body", "files"), f"Value error, no stored file {name!r}: put it first (PUT {PREFIX}/{name})", name
            )


async def _record(gw: Gateway, event: FileEvent) -> None:
    """The change as an event (the audit log: who stored or deleted which file)."""
    try:
        await publish_event(gw.js, gw.subjects, event)
    except STORE_ERRORS as exc:
        raise BusUnavailable(
            f"the change to file {event.name!r} is made but its {event.type} event could not be stored "
            f"({exc or type(exc).__name__}); repeat the request"
        ) from exc


async def _limited(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > max_bytes:
            raise TooLarge
        yield chunk


@router.put(
    "/{name:path}",
    response_model=StoredFile,
    summary="Store a file (streamed)",
    responses={**UNAUTHORIZED, **_TOO_LARGE, **INVALID, **UNAVAILABLE},
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
)
async def put_file(
    name: NamePath,
    request: Request,
    gw: GatewayDep,
    caller: Admin,
    executable: Annotated[bool, Query(description="Place it in run folders with mode 0755 (else 0644).")] = False,
) -> StoredFile:
    """The request body, any size up to `SCRIPTBUS_FILES_MAX_BYTES`, becomes file `name` (replacing one of
    that name once fully stored). Admin: a stored file is code runs use. Answers its size and sha256."""
    checked_name(name)
    limit = gw.settings.files_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(
            f"the file is {declared} bytes; this gateway takes at most {limit} (SCRIPTBUS_FILES_MAX_BYTES)"
        )
    bucket = gw.subjects.files_bucket
    stream = f"OBJ_{bucket}"
    previous = await stored(gw, bucket, name)

    async def purge(subject: str) -> None:
        try:
            await gw.js.purge_stream(stream, subject=subject)
        except STORE_ERRORS as exc:
            log.warning("file %s: chunks of an unfinished put not purged: %s", name, exc)

    headers = {STORED_BY_HEADER: [caller.name], EXECUTABLE_HEADER: ["true" if executable else "false"]}
    try:
        info = await write_object(gw.js, bucket, name, _limited(request, limit), headers, on_error=purge)
    except TooLarge:
        raise RequestTooLarge(
            f"the file is larger than {limit} bytes (SCRIPTBUS_FILES_MAX_BYTES); nothing was stored"
        ) from None
    except ClientDisconnect:
        raise UploadCutOff("the upload was cut off; nothing was stored") from None
    except STORE_ERRORS as exc:
        raise _bus_down(exc) from exc
    if previous is not None and previous.nuid != info.nuid:
        await purge(f"$O.{bucket}.C.{previous.nuid}")
    stored_file = describe(info)
    await _record(
        gw,
        FileStored(
            name=name,
            size=stored_file.size,
            sha256=stored_file.sha256,
            executable=executable,
            stored_by=caller.name,
        ),
    )
    log.info("file %s stored by %s (%d bytes)", name, caller.name, stored_file.size)
    return stored_file


@router.get("", response_model=StoredFileList, summary="List files", responses={**UNAUTHORIZED, **UNAVAILABLE})
async def list_files(gw: GatewayDep) -> StoredFileList:
    """Every stored file with its size, sha256, and when and by whom it was stored, by name."""
    try:
        store = await gw.js.object_store(gw.subjects.files_bucket)
        infos = await store.list(ignore_deletes=True)
    except nats.js.errors.NotFoundError:
        infos = []
    except STORE_ERRORS as exc:
        raise _bus_down(exc) from exc
    return StoredFileList(files=sorted((describe(i) for i in infos if not i.deleted), key=lambda f: f.name))


def download(gw: Gateway, info: ObjectInfo) -> StreamingResponse:
    """An object's bytes as they come from the store, with its sha256 as ETag and X-Content-SHA256."""
    sha = hex_sha256(info)
    headers = {"ETag": f'"{sha}"', "X-Content-SHA256": sha, "Content-Length": str(info.size or 0)}
    return StreamingResponse(read_chunks(gw.js, info), media_type="application/octet-stream", headers=headers)


@router.get(
    "/{name:path}",
    summary="Get a file's bytes (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        **UNAUTHORIZED,
        **_404,
        **INVALID,
        **UNAVAILABLE,
    },
)
async def get_file(name: NamePath, gw: GatewayDep) -> StreamingResponse:
    """The file's exact bytes; `ETag` and `X-Content-SHA256` carry its sha256."""
    info = await stored(gw, gw.subjects.files_bucket, checked_name(name))
    if info is None:
        raise FileNotFound(f"no stored file {name!r}")
    return download(gw, info)


@router.delete(
    "/{name:path}",
    status_code=204,
    response_class=Response,
    summary="Delete a file",
    responses={**UNAUTHORIZED, **_404, **INVALID, **UNAVAILABLE},
)
async def delete_file(name: NamePath, gw: GatewayDep, caller: Admin) -> Response:
    """Remove the file; runs requested with it that have not started fail, saying it is gone."""
    try:
        found = await delete_object(gw.js, gw.subjects.files_bucket, checked_name(name))
    except STORE_ERRORS as exc:
        raise _bus_down(exc) from exc
    if not found:
        raise FileNotFound(f"no stored file {name!r}")
    await _record(gw, FileDeleted(name=name, deleted_by=caller.name))
    log.info("file %s deleted by %s", name, caller.name)
    return Response(status_code=204)
