"""`scriptbus files put|get|ls|rm` and `scriptbus cp`: files through the files store, and copies to and from
a host's filesystem made as ordinary runs on that host (same roles, output and events as any run).

`cp ./tool.sh build-1:/opt/bin/` stores the file under a temporary name, runs an install script on
build-1 with it in its folder, and removes the temporary file. `cp build-1:/var/log/app.log ./` runs a
script that copies the file into its folder, keeps it as an artifact, and downloads that.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import stat
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scriptbus.client import render
from scriptbus.client.api import ClientError
from scriptbus.client.commands import Context, UsageError, follow_run
from scriptbus.client.verbs import verb_group

EPILOG = """examples:
  scriptbus files put ./deploy.sh tools/deploy.sh   # admin; executable when the local file is
  scriptbus run --use-file tools/deploy.sh --artifact 'out/*' './tools/deploy.sh'
  scriptbus cp ./tool.sh build-1:/opt/spa/bin/       # a run on build-1 installs it
  scriptbus cp build-1:/var/log/app.log ./           # a run on build-1 sends it back
"""
# `host:path`: a host token, then a path on it. A local path with a ':' can be given as ./a:b.
_REMOTE = re.compile(r"^(?P<host>[A-Za-z0-9][A-Za-z0-9._-]{0,254}):(?P<path>.+)$")
# Where a download run puts the file it sends back (its artifact pattern matches only this folder).
FETCH_DIR = "fetched"
CHUNK = 1024 * 1024
# How long a finished run may take to show as finished in the read model.
PROJECTION_WAIT_S = 10.0

# $1: the placed file, $2: the destination (a folder when it ends in '/' or is one).
INSTALL_SCRIPT = """set -e
src=$1 dest=$2
case $dest in */) dest=$dest${src##*/} ;; esac
if [ -d "$dest" ]; then dest=$dest/${src##*/}; fi
cp -- "$src" "$dest"
echo "copied to $dest on $(hostname)"
"""
# $1: the file on the host; only a regular file is sent (not a folder, nor a device).
FETCH_SCRIPT = f"""set -e
if [ ! -f "$1" ]; then echo "not a regular file (or not readable by $(id -un)): $1" >&2; exit 1; fi
mkdir {FETCH_DIR}
cp -- "$1" "{FETCH_DIR}/${{1##*/}}"
"""
RIGHTS_HINT = (
    "the copy runs as the executor's script user (scriptbus-run when the executor is root), "
    "which needs the rights on that path; see the run's stderr above"
)


def _path(name: str) -> str:
    return "/files/" + quote(name, safe="/")


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise ClientError(f"the API answered {response.status_code} with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise ClientError("the API answered with unexpected JSON")
    return body


def put_file(ctx: Context, local: Path, name: str, executable: bool | None = None) -> dict[str, Any]:
    """Stream `local` into the files store as `name` (executable when the local file is, unless told)."""
    try:
        mode = local.stat().st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{local}: not a regular file")
        exe = bool(mode & stat.S_IXUSR) if executable is None else executable
        with local.open("rb") as f:
            response = ctx.api.request(
                "PUT",
                _path(name),
                content=iter(lambda: f.read(CHUNK), b""),
                params={"executable": "true" if exe else "false"},
                headers={"content-type": "application/octet-stream", "content-length": str(local.stat().st_size)},
            )
    except OSError as exc:
        raise UsageError(f"cannot read {local}: {exc.strerror or exc}") from exc
    return _json_body(response)


def download(ctx: Context, path: str, dest: Path, sha256: str | None = None) -> int:
    """Stream API `path` into `dest` (written beside it, then renamed); checks the sha256 the server
    states (and `sha256` when given). Returns the bytes written."""
    tmp = dest.with_name(f".{dest.name}.scriptbus-part")
    h = hashlib.sha256()
    size = 0
    try:
        with ctx.api.transport_errors(), ctx.api.stream(path) as response, tmp.open("wb") as out:
            stated = response.headers.get("x-content-sha256")
            for chunk in response.iter_bytes():
                out.write(chunk)
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for expected in (stated, sha256):
        if expected and expected != h.hexdigest():
            tmp.unlink(missing_ok=True)
            raise ClientError(f"{path}: received bytes do not match sha256 {expected}; nothing was written")
    tmp.replace(dest)
    return size


def _target(dest: str, name: str) -> Path:
    """The local file for `dest`: inside it when it is a folder or ends in '/'."""
    path = Path(dest)
    if dest.endswith("/") or path.is_dir():
        return path / name
    return path


# -- files ---------------------------------------------------------------------------------------


def cmd_put(ctx: Context, args: argparse.Namespace) -> int:
    local = Path(args.local)
    stored = put_file(ctx, local, args.name or local.name, True if args.executable else None)
    if ctx.json:
        print(json.dumps(stored, indent=2))
    else:
        print(f"stored {stored['name']} ({stored['size']} bytes, sha256 {stored['sha256']})")
    return 0


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    dest = _target(args.dest or ".", args.name.rsplit("/", 1)[-1])
    size = download(ctx, _path(args.name), dest)
    print(f"{args.name} -> {dest} ({size} bytes)", file=sys.stderr)
    return 0


def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    files = _json_body(ctx.api.request("GET", "/files")).get("files", [])
    if ctx.json:
        print(json.dumps({"files": files}, indent=2))
    elif not files:
        print("no files (an admin stores one with `scriptbus files put LOCAL [NAME]`)")
    else:
        rows = [
            [f["name"], str(f["size"]), f["sha256"][:12], render.ago(f.get("stored_at")), f.get("stored_by") or "-"]
            for f in files
        ]
        print(render.table(["NAME", "SIZE", "SHA256", "STORED", "BY"], rows, ctx.colour))
    return 0


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    ctx.api.request("DELETE", _path(args.name))
    if not ctx.json:
        print(f"file {args.name} removed")
    return 0


# -- cp ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    host: str
    path: str


def parse_location(value: str) -> Remote | None:
    """`host:path` as a Remote; None for a local path (`./a:b` and `/a:b` stay local)."""
    if value.startswith(("/", "./", "../")):
        return None
    found = _REMOTE.match(value)
    return Remote(found["host"], found["path"]) if found else None


def _run(ctx: Context, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    run = ctx.api.create_run(body)
    code = follow_run(ctx, run, stop_on_interrupt=True)
    return code, run


def copy_to_host(ctx: Context, local: Path, remote: Remote) -> int:
    temporary = f"cp/{uuid.uuid4()}/{local.name}"
    put_file(ctx, local, temporary)
    try:
        code, _ = _run(
            ctx,
            {
                "script": INSTALL_SCRIPT,
                "args": [temporary, remote.path],
                "files": [temporary],
                "host": remote.host,
                "description": f"scriptbus cp {local.name} {remote.host}:{remote.path}",
            },
        )
    finally:
        try:
            ctx.api.request("DELETE", _path(temporary))
        except ClientError as exc:
            print(f"scriptbus: temporary file {temporary} not removed: {exc.message}", file=sys.stderr)
    if code:
        print(f"scriptbus: cp to {remote.host}:{remote.path} failed: {RIGHTS_HINT}", file=sys.stderr)
    return code


def copy_from_host(ctx: Context, remote: Remote, dest: str) -> int:
    name = remote.path.rstrip("/").rsplit("/", 1)[-1]
    code, run = _run(
        ctx,
        {
            "script": FETCH_SCRIPT,
            "args": [remote.path],
            "artifacts": [f"{FETCH_DIR}/*"],
            "host": remote.host,
            "description": f"scriptbus cp {remote.host}:{remote.path} {dest}",
        },
    )
    if code:
        print(f"scriptbus: cp from {remote.host}:{remote.path} failed: {RIGHTS_HINT}", file=sys.stderr)
        return code
    listing = _finished_artifacts(ctx, str(run["id"]))
    wanted = f"{FETCH_DIR}/{name}"
    found = [a for a in listing.get("artifacts", []) if a.get("path") == wanted]
    if not found:
        raise ClientError(f"run {run['id']} kept no {wanted}: see `scriptbus show {run['id']}`")
    target = _target(dest, name)
    size = download(ctx, f"/runs/{run['id']}/artifacts/{quote(wanted, safe='/')}", target, found[0]["sha256"])
    print(f"{remote.host}:{remote.path} -> {target} ({size} bytes)", file=sys.stderr)
    return 0


def _finished_artifacts(ctx: Context, run_id: str) -> dict[str, Any]:
    """The run's artifact list once the read model shows it finished (the live stream that ended the
    follow can be a moment ahead of it)."""
    deadline = time.monotonic() + PROJECTION_WAIT_S
    while ctx.api.get_run(run_id).get("finished_at") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return _json_body(ctx.api.request("GET", f"/runs/{run_id}/artifacts"))


def cmd_cp(ctx: Context, args: argparse.Namespace) -> int:
    source, dest = parse_location(args.source), parse_location(args.dest)
    if source is None and dest is not None:
        return copy_to_host(ctx, Path(args.source), dest)
    if source is not None and dest is None:
        return copy_from_host(ctx, source, args.dest)
    raise UsageError("give one side as HOST:PATH and the other as a local path (./a:b for a local name with ':')")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`scriptbus files` and `scriptbus cp`, on the client's subparsers `sub`."""
    add = verb_group(
        sub,
        common,
        "files",
        help="files runs get in their folder: put, get, ls, rm",
        description="Files in the files store. A run naming one (`files` in the API) finds it in its folder "
        "before it starts. Storing and removing need the admin role; reading, the read role.",
        epilog=EPILOG,
    )

    sp = add("put", cmd_put, help="store a local file (streamed)")
    sp.add_argument("local", metavar="LOCAL")
    sp.add_argument("name", metavar="NAME", nargs="?", help="its name in the store (default: LOCAL's file name)")
    sp.add_argument("--executable", action="store_true", help="mode 0755 in run folders (default: as LOCAL is)")
    sp = add("get", cmd_get, help="download a file (streamed, sha256 checked)")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("dest", metavar="DEST", nargs="?", help="a file or folder (default: .)")
    add("ls", cmd_ls, help="list files: name, size, sha256, when and by whom")
    sp = add("rm", cmd_rm, help="remove a file")
    sp.add_argument("name", metavar="NAME")

    cp = sub.add_parser(
        "cp",
        parents=[common],
        help="copy a file to or from a host (as a run on it)",
        description="Copy a local file to HOST:PATH, or HOST:PATH to a local file or folder. Each copy is a "
        "run on HOST, shown and recorded like any other; it runs as the executor's script user, which needs "
        "the rights on PATH. Copying to a host stores a temporary file (admin role); from a host needs the "
        "run role.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cp.set_defaults(handler=cmd_cp)
    cp.add_argument("source", metavar="SOURCE")
    cp.add_argument("dest", metavar="DEST")
