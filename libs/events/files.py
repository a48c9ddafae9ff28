"""Files and artifacts in JetStream's object stores: what a name may be, what an artifact pattern may be,
and the two ways services touch the stores that nats-py's `ObjectStore` does not fit.

nats-py's `get` holds a whole object in memory (or writes it from a thread) and its `put` reads before it
writes (an executor may only write the artifacts store). Both keep nats-py's wire format: chunks on
`$O.<bucket>.C.<nuid>`, the object's info as JSON on `$O.<bucket>.M.<base64url(name)>` (a rollup), so
`nats object` and nats-py read what we write.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import Header, ObjectInfo, ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore
from pydantic import BaseModel, ConfigDict

from scriptbus.events.envelope import Event
from scriptbus.events.subjects import Subjects

MAX_NAME_CHARS = 512
# Bounds what a run request carries: the names and patterns travel in its event.
MAX_FILES_PER_RUN = 64
MAX_PATTERNS_PER_RUN = 32
# What a run's `run.finished` may list (it must fit one NATS message).
MAX_ARTIFACTS_PER_RUN = 500
CHUNK_BYTES = 128 * 1024
# Object headers (nats.go's shape: each value a list) for who stored a file and whether it is a program.
STORED_BY_HEADER = "Scriptbus-Stored-By"
EXECUTABLE_HEADER = "Scriptbus-Executable"
_GLOB_CHARS = re.compile(r"[*?\[]")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a file or an artifact path (a relative path inside a run's folder), or None."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_CHARS:
        return f"must be at most {MAX_NAME_CHARS} characters"
    if "\x00" in name or any(ord(c) < 32 for c in name):
        return "must not contain NUL or control characters"
    if name.startswith("/"):
        return "must be a relative path (no leading '/')"
    if "\\" in name:
        return "must use '/' between folders"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "must not contain '..', '.' or empty parts ('//', a trailing '/')"
    return None


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot select artifacts (a relative glob: `*`, `?`, `[…]`, `**` for any folders)."""
    problem = name_problem(pattern)
    if problem is not None:
        return problem
    if any("**" in p and p != "**" for p in pattern.split("/")):
        return "may use '**' only as a whole path part, as in 'out/**/*.log'"
    return None


def matches(pattern: str, path: str) -> bool:
    """True when relative `path` matches `pattern`: `*`, `?` and `[…]` within one part, `**` any parts."""
    return _match(pattern.split("/"), path.split("/"))


def _match(pat: list[str], parts: list[str]) -> bool:
    if not pat:
        return not parts
    if pat[0] == "**":
        return any(_match(pat[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pat[0]) and _match(pat[1:], parts[1:])


def is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS.search(pattern))


class Artifact(BaseModel):
    """One file a run left behind, stored as `<run_id>/<path>` in the artifacts store."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    sha256: str


class FileEvent(Event):
    """Who stored or deleted which file: the audit log. The listing comes from the object store itself."""

    name: str

    @property
    def key(self) -> str:
        return file_key(self.name)


class FileStored(FileEvent):
    type: Literal["file.stored"] = "file.stored"
    size: int
    sha256: str
    executable: bool = False
    stored_by: str = ""


class FileDeleted(FileEvent):
    type: Literal["file.deleted"] = "file.deleted"
    deleted_by: str = ""


def file_key(name: str) -> str:
    """A subject token for a file name (which may hold '.' and '/')."""
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def artifact_object(run_id: str, path: str) -> str:
    return f"{run_id}/{path}"


def hex_sha256(info: ObjectInfo) -> str:
    """The hex SHA-256 of an object from its info's `SHA-256=<base64url>` digest ('' when it has none)."""
    digest = info.digest or ""
    _, _, b64 = digest.partition("=")
    if not b64:
        return ""
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()


def header(info: ObjectInfo, name: str) -> str:
    """One of our headers from an object's info ('' when missing)."""
    value = (info.headers or {}).get(name)
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


async def ensure_object_store(js: JetStreamContext, bucket: str) -> ObjectStore:
    """The object store `bucket`, created when missing (by a service allowed to)."""
    try:
        return await js.create_object_store(bucket, ObjectStoreConfig(storage=StorageType.FILE))
    except nats.js.errors.BadRequestError:
        return await js.object_store(bucket)


async def ensure_file_stores(js: JetStreamContext, s: Subjects) -> None:
    """Both object stores, made at the gateway's start: executors may not create streams."""
    await ensure_object_store(js, s.files_bucket)
    await ensure_object_store(js, s.artifacts_bucket)


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


async def object_info(js: JetStreamContext, bucket: str, name: str) -> ObjectInfo | None:
    """The live object's info, or None when there is none (never stored, or deleted)."""
    try:
        msg = await js.get_last_msg(f"OBJ_{bucket}", _meta_subject(bucket, name))
    except nats.js.errors.NotFoundError:
        return None
    info = ObjectInfo.from_response(json.loads(msg.data or b"{}"))
    return None if info.deleted else info


async def read_chunks(js: JetStreamContext, info: ObjectInfo) -> AsyncIterator[bytes]:
    """An object's bytes chunk by chunk, as they arrive (never the whole object in memory). Raises
    ValueError at the end when what came does not match the stored digest."""
    if not info.size:
        return
    sub = await js.subscribe(f"$O.{info.bucket}.C.{info.nuid}", ordered_consumer=True)
    h = hashlib.sha256()
    try:
        while True:
            msg = await sub.next_msg(timeout=30)
            h.update(msg.data)
            yield msg.data
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    if h.hexdigest() != hex_sha256(info):
        raise ValueError(f"object {info.name!r}: content does not match its digest")


class TooLarge(Exception):
    """What was being stored went past its limit; nothing of it is kept."""


async def write_object(
    js: JetStreamContext,
    bucket: str,
    name: str,
    chunks: AsyncIterator[bytes],
    headers: dict[str, list[str]] | None = None,
    on_error: Callable[[str], Awaitable[object]] | None = None,
) -> ObjectInfo:
    """Store `chunks` as object `name` without reading the store first (an executor may only write the
    artifacts store). The object exists once its info is published, after every chunk; an error before
    that leaves only chunks no info names, which `on_error(chunk_subject)` may purge (the gateway can)."""
    nuid = js._nc._nuid.next().decode()  # nats-py's own id source for chunk subjects
    chunk_subject = f"$O.{bucket}.C.{nuid}"
    h = hashlib.sha256()
    size = count = 0
    pending = bytearray()

    async def send(piece: bytes) -> None:
        nonlocal size, count
        await js.publish(chunk_subject, piece)
        h.update(piece)
        size += len(piece)
        count += 1

    try:
        # Whole chunks whatever sizes come in: an HTTP body arrives in small pieces, and each chunk
        # waits for its ack.
        async for data in chunks:
            pending += data
            while len(pending) >= CHUNK_BYTES:
                await send(bytes(pending[:CHUNK_BYTES]))
                del pending[:CHUNK_BYTES]
        if pending:
            await send(bytes(pending))
    except BaseException:
        if on_error is not None:
            await on_error(chunk_subject)
        raise
    info = ObjectInfo(
        name=name,
        bucket=bucket,
        nuid=nuid,
        size=size,
        chunks=count,
        mtime=datetime.now(UTC).isoformat(),
        digest="SHA-256=" + base64.urlsafe_b64encode(h.digest()).decode(),
        headers=headers,
    )
    await js.publish(_meta_subject(bucket, name), json.dumps(info.as_dict()).encode(), headers={Header.ROLLUP: "sub"})
    return info


async def delete_object(js: JetStreamContext, bucket: str, name: str) -> bool:
    """Delete object `name` (its info marked deleted, its chunks purged); False when there was none."""
    store = await js.object_store(bucket)
    try:
        await store.delete(name)
    except nats.js.errors.ObjectNotFoundError:
        return False
    return True
