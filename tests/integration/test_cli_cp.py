"""`scriptbus cp` both ways and `scriptbus files`, as a user types them, against the real stack: each copy
is a run on the host, and a path the script's user may not write or read fails with its stderr shown."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import ServiceProcess
from tests.helpers.stack import Stack, running_stack

SCRIPTBUS = [sys.executable, "-m", "scriptbus"]


@pytest.fixture
async def stack(start_service: Callable[..., ServiceProcess]) -> AsyncIterator[Stack]:
    async with running_stack(start_service, executors=(("--host", "build-1"),)) as ready:
        yield ready


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder on "the host" that any user may write (scripts run as another user when tests run as root)."""
    path = Path("/tmp") / f"scriptbus-cp-{uuid.uuid4().hex[:8]}"
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def cli(api: str, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_") and k != "NO_COLOR"}
    proc = await asyncio.create_subprocess_exec(
        *SCRIPTBUS,
        *args,
        env={**env, "SCRIPTBUS_API": api},
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def test_cp_to_a_host_and_back(stack: Stack, shared_dir: Path, tmp_path: Path) -> None:
    tool = tmp_path / "tool.sh"
    tool.write_bytes(b"#!/bin/bash\necho tool\n" + os.urandom(300_000))
    tool.chmod(0o755)

    code, out, err = await cli(stack.api, "cp", str(tool), f"build-1:{shared_dir}/")
    assert code == 0, (out, err)
    assert f"copied to {shared_dir}/tool.sh" in out
    placed = shared_dir / "tool.sh"
    assert placed.read_bytes() == tool.read_bytes()
    assert placed.stat().st_mode & 0o111  # still a program
    # The temporary file is gone from the store; the copy is an ordinary run on build-1.
    assert (await stack.client.get("/api/v1/files")).json() == {"files": []}
    runs = (await stack.client.get("/api/v1/runs", params={"host": "build-1"})).json()["items"]
    assert [r["status"] for r in runs] == ["succeeded"]

    log = shared_dir / "app.log"
    log.write_bytes(os.urandom(1_000_000))
    log.chmod(0o644)
    back = tmp_path / "back"
    back.mkdir()
    code, out, err = await cli(stack.api, "cp", f"build-1:{log}", "./", cwd=back)
    assert code == 0, (out, err)
    assert hashlib.sha256((back / "app.log").read_bytes()).digest() == hashlib.sha256(log.read_bytes()).digest()

    # Where the script's user has no rights: its stderr, a hint, a non-zero exit.
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o700)
    if os.geteuid() == 0:
        code, out, err = await cli(stack.api, "cp", str(tool), f"build-1:{locked}/")
        assert code != 0
        assert "Permission denied" in err and "needs the rights on that path" in err
        secret = locked / "secret.log"
        secret.write_text("no\n")
        code, out, err = await cli(stack.api, "cp", f"build-1:{secret}", str(tmp_path / "x"))
        assert code != 0 and "needs the rights on that path" in err
        assert not (tmp_path / "x").exists()

    code, out, err = await cli(stack.api, "cp", str(tool), str(tmp_path / "other"))
    assert code != 0 and "HOST:PATH" in err


async def test_files_put_ls_get_rm(stack: Stack, tmp_path: Path) -> None:
    local = tmp_path / "deploy.sh"
    local.write_bytes(b"echo deployed\n")
    code, out, err = await cli(stack.api, "files", "put", str(local), "tools/deploy.sh", "--executable")
    assert code == 0 and "stored tools/deploy.sh (14 bytes" in out, (out, err)
    code, out, err = await cli(stack.api, "files", "ls")
    assert code == 0 and "tools/deploy.sh" in out, (out, err)
    code, out, err = await cli(
        stack.api, "run", "--use-file", "tools/deploy.sh", "--artifact", "*.txt", "./tools/deploy.sh > r.txt; cat r.txt"
    )
    assert code == 0 and out == "deployed\n", (out, err)
    code, out, err = await cli(stack.api, "files", "get", "tools/deploy.sh", str(tmp_path / "copy.sh"))
    assert code == 0 and (tmp_path / "copy.sh").read_bytes() == b"echo deployed\n", err
    code, out, err = await cli(stack.api, "files", "rm", "tools/deploy.sh")
    assert code == 0, err
    code, out, err = await cli(stack.api, "files", "get", "tools/deploy.sh", str(tmp_path / "gone.sh"))
    assert code == 1 and "no stored file" in err
