"""A run's files in, its artifacts out: files from the files store placed in the run's folder before the
script starts, and what its `artifacts` patterns match uploaded after it ends.

The executor may run as root while the folder belongs to the script's user, who may have left symlinks
(or swaps a folder for one) to make root read or write elsewhere: every path is opened part by part
relative to the run folder with O_NOFOLLOW, so nothing outside it is ever touched.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from nats.js import JetStreamContext

from scriptbus.events.files import (
    EXECUTABLE_HEADER,
    MAX_ARTIFACTS_PER_RUN,
    Artifact,
    artifact_object,
    header,
    hex_sha256,
    matches,
    object_info,
    read_chunks,
    write_object,
)
from scriptbus.events.subjects import Subjects
from scriptbus.executor.run_as import RunAs

log = logging.getLogger(__name__)

READ_BYTES = 128 * 1024
# A script that leaves a huge tree behind must not keep the executor walking it.
MAX_ENTRIES_WALKED = 100_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileMissing(Exception):
    """A file the run names is not in the files store (deleted after the run was requested)."""


async def place_files(js: JetStreamContext, s: Subjects, names: list[str], cwd: Path, run_as: RunAs | None) -> None:
    """Put each named file into the (new, empty) run folder, owned by the script's user: mode 0755 when it
    was stored as executable, else 0644. FileMissing when one is gone."""
    for name in names:
        info = await object_info(js, s.files_bucket, name)
        if info is None:
            raise FileMissing(f"file {name!r} is not in the files store (deleted since the run was requested?)")
        mode = 0o755 if header(info, EXECUTABLE_HEADER) == "true" else 0o644
        parent = _open_dirs(cwd, name.split("/")[:-1], create=True, run_as=run_as)
        try:
            fd = os.open(
                name.rsplit("/", 1)[-1],
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                mode,
                dir_fd=parent,
            )
        finally:
            os.close(parent)
        try:
            async for chunk in read_chunks(js, info):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if run_as is not None:
                os.fchown(fd, run_as.uid, run_as.gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        log.info("placed file %s (%d bytes) in %s", name, info.size or 0, cwd)


def _open_dirs(root: Path, parts: list[str], create: bool = False, run_as: RunAs | None = None) -> int:
    """An fd of folder `root/parts…`, reached without following any symlink (made when `create`)."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    if run_as is not None:
                        os.chown(part, run_as.uid, run_as.gid, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class Collected:
    """What the artifacts patterns kept, and a note for the run's reason when something was left out."""

    artifacts: list[Artifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        return "; ".join(self.notes)


def _matching(root: Path, patterns: list[str]) -> tuple[list[str], bool]:
    """Relative paths of regular files below `root` (symlinks neither followed nor listed) matching a
    pattern, sorted; True when the walk stopped at MAX_ENTRIES_WALKED."""
    found: list[str] = []
    seen = 0
    pending: list[str] = [""]
    while pending:
        rel = pending.pop()
        try:
            fd = _open_dirs(root, rel.split("/") if rel else [])
        except OSError:
            continue  # swapped for a symlink, or gone
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    seen += 1
                    if seen > MAX_ENTRIES_WALKED:
                        return sorted(found), True
                    path = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(path)
                    elif entry.is_file(follow_symlinks=False) and any(matches(p, path) for p in patterns):
                        found.append(path)
        finally:
            os.close(fd)
    return sorted(found), False


def _open_regular(root: Path, path: str, owner: int | None) -> int | None:
    """An fd to read `root/path` when it is (still) a regular file reached without a symlink, and owned by
    `owner` when given (a hard link the script made to a file it may not read is not its own), else None."""
    parts = path.split("/")
    try:
        parent = _open_dirs(root, parts[:-1])
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(parent)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (owner is not None and st.st_uid != owner):
        os.close(fd)
        return None
    return fd


async def _read(fd: int, size: int) -> AsyncIterator[bytes]:
    """At most `size` bytes of `fd` (what it had when looked at), in chunks."""
    left = size
    while left > 0:
        data = os.read(fd, min(READ_BYTES, left))
        if not data:
            return
        left -= len(data)
        yield data


async def collect_artifacts(
    js: JetStreamContext,
    s: Subjects,
    run_id: str,
    patterns: list[str],
    cwd: Path,
    max_bytes: int,
    run_as: RunAs | None = None,
) -> Collected:
    """Upload the regular files under `cwd` that match `patterns` as `<run_id>/<path>`, up to
    `max_bytes` in all and MAX_ARTIFACTS_PER_RUN files; what was left out is in the note. When scripts
    run as `run_as`, only that user's files are taken: the executor reads as root."""
    out = Collected()
    if not patterns or not cwd.is_dir():
        return out
    paths, cut = _matching(cwd, patterns)
    if cut:
        out.notes.append(f"artifacts: stopped looking after {MAX_ENTRIES_WALKED} entries in the run folder")
    total = 0
    for path in paths:
        if len(out.artifacts) >= MAX_ARTIFACTS_PER_RUN:
            out.notes.append(f"artifacts: only the first {MAX_ARTIFACTS_PER_RUN} files kept, of {len(paths)}")
            break
        fd = _open_regular(cwd, path, None if run_as is None else run_as.uid)
        if fd is None:
            continue
        try:
            size = os.fstat(fd).st_size
            if total + size > max_bytes:
                out.notes.append(
                    f"artifacts: {path} ({size} bytes) and later files left out: over the limit of "
                    f"{max_bytes} bytes per run (SCRIPTBUS_ARTIFACTS_MAX_BYTES)"
                )
                break
            info = await write_object(js, s.artifacts_bucket, artifact_object(run_id, path), _read(fd, size))
        finally:
            os.close(fd)
        total += info.size or 0
        out.artifacts.append(Artifact(path=path, size=info.size or 0, sha256=hex_sha256(info)))
    log.info("run %s: %d artifacts uploaded (%d bytes)", run_id, len(out.artifacts), total)
    return out
