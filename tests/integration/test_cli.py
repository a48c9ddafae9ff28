"""The `scriptbus` command-line client, run as a user runs it, against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from scriptbus.embedded import free_port
from tests.helpers.api import TERMINAL, start_run, wait_for_status, wait_until_ready
from tests.helpers.processes import ServiceProcess
from tests.helpers.stack import Stack, running_stack
from tests.helpers.waiting import eventually

SCRIPTBUS = [sys.executable, "-m", "scriptbus"]


@pytest.fixture
async def stack(start_service: Callable[..., ServiceProcess]) -> AsyncIterator[Stack]:
    """Recorder, scheduler, one executor (host `local`) and a gateway on a free port, ready."""
    async with running_stack(start_service) as ready:
        yield ready


def cli_env(api: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTBUS_") and k != "NO_COLOR"}
    return {**env, "SCRIPTBUS_API": api, "PYTHONUNBUFFERED": "1", **extra}


async def spawn(api: str, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *SCRIPTBUS,
        *args,
        env=env or cli_env(api),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def cli(api: str, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run `scriptbus ARGS…` to the end: (exit status, stdout bytes, stderr bytes)."""
    proc = await spawn(api, *args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def read_until(stream: asyncio.StreamReader, wanted: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        chunk = await asyncio.wait_for(stream.read(4096), max(0.1, deadline - time.monotonic()))
        if not chunk:
            raise AssertionError(f"stream ended before {wanted!r}; got {seen!r}")
        seen += chunk
    return seen


async def test_run_mirrors_exit_code_and_keeps_stdout_and_stderr_apart(stack: Stack) -> None:
    code, out, err = await cli(stack.api, "run", r"printf 'out\xff\n'; printf 'err\x80\n' >&2; exit 7")
    assert code == 7
    assert out == b"out\xff\n"
    # The script's own stderr and nothing else: a failed run needs no status line of ours.
    assert err == b"err\x80\n"

    code, out, err = await cli(stack.api, "run", "echo fine")
    assert (code, out, err) == (0, b"fine\n", b"")

    code, out, err = await cli(stack.api, "run", "echo going; kill -KILL $$")
    assert code == 128 + 9 and out == b"going\n"
    assert re.fullmatch(rb"scriptbus: run [0-9a-f]{8} terminated by SIGKILL\n", err), err


async def test_run_from_a_file_with_args_env_and_description(stack: Stack, tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text('printf "[%s]\\n" "$@"; echo "$GREETING"\n')
    code, out, err = await cli(
        stack.api,
        "run",
        "-f",
        str(script),
        "--env",
        "GREETING=hi there",
        "-d",
        "from a file",
        "--",
        "a b",
        "-c",
    )
    assert (code, out, err) == (0, b"[a b]\n[-c]\nhi there\n", b"")
    code, out, _ = await cli(stack.api, "ps", "--all", "--json")
    run = json.loads(out)["items"][0]
    assert run["description"] == "from a file" and run["args"] == ["a b", "-c"]


async def test_detach_then_logs_follow_then_ps(stack: Stack, exchange_dir: Path) -> None:
    # The run waits after each line until `go` exists: a loaded machine may take longer to start the `ps`
    # below than any sleep would give it.
    go = exchange_dir / "go"
    script = f"for i in 1 2 3 4; do echo $i; echo e$i >&2; until [ -e {go} ]; do sleep 0.05; done; done"
    code, out, err = await cli(stack.api, "run", "--detach", script)
    assert code == 0 and err == b""
    run_id = out.decode().strip()
    assert uuid.UUID(run_id)

    # While it runs, plain `ps` lists it (as JSON, parseable).
    code, out, _ = await cli(stack.api, "ps", "--json")
    go.touch()
    assert code == 0
    listed = json.loads(out)
    assert run_id in [r["id"] for r in listed["items"]]

    # `logs -f` by an id prefix: every byte, each on its own stream, until the run ends.
    code, out, err = await cli(stack.api, "logs", "-f", run_id[:8])
    assert (code, out, err) == (0, b"1\n2\n3\n4\n", b"e1\ne2\ne3\ne4\n")

    # Finished runs leave the default list and show with --all.
    await wait_for_status(stack.client, run_id, TERMINAL)
    code, out, _ = await cli(stack.api, "ps", "--json")
    assert run_id not in [r["id"] for r in json.loads(out)["items"]]
    code, out, _ = await cli(stack.api, "ps", "--all", "--json", "--status", "succeeded")
    assert [r["id"] for r in json.loads(out)["items"]] == [run_id]

    # The table, piped: plain text, the short id, the status.
    code, out, _ = await cli(stack.api, "ps", "--all")
    lines = out.decode().splitlines()
    assert lines[0].split() == ["ID", "STATUS", "EXIT", "HOST", "CREATED", "DURATION", "DESCRIPTION"]
    assert b"\x1b" not in out
    row = next(line for line in lines if line.startswith(run_id[:8]))
    assert row.split()[1:4] == ["succeeded", "0", "local"]

    # Stored logs of a finished run, one stream, and `show`.
    code, out, err = await cli(stack.api, "logs", "--stream", "stderr", run_id)
    assert (code, out, err) == (0, b"e1\ne2\ne3\ne4\n", b"")
    code, out, _ = await cli(stack.api, "show", run_id[:6])
    assert code == 0 and re.search(rb"^id: +" + run_id.encode() + rb"$", out, re.MULTILINE)
    assert b"succeeded" in out and b"for i in 1 2 3 4" in out
    code, out, _ = await cli(stack.api, "show", "--json", run_id)
    assert json.loads(out)["id"] == run_id

    # rm forgets it; a second rm is the server's 404, one line, exit 1.
    assert (await cli(stack.api, "rm", run_id))[0] == 0
    code, out, err = await cli(stack.api, "rm", run_id)
    assert code == 1 and err == f"scriptbus: run {run_id} not found\n".encode()


async def test_api_errors_are_one_line_and_usage_errors_exit_2(stack: Stack) -> None:
    missing = str(uuid.uuid4())
    code, out, err = await cli(stack.api, "show", missing)
    assert (code, out, err) == (1, b"", f"scriptbus: run {missing} not found\n".encode())
    code, _, err = await cli(stack.api, "show", "zz")
    assert code == 1 and err.startswith(b"scriptbus: ") and len(err.splitlines()) == 1

    done = await start_run(stack.client, "true")
    await wait_for_status(stack.client, done["id"], TERMINAL)
    code, _, err = await cli(stack.api, "stop", done["id"])
    assert code == 1 and b"already finished" in err and len(err.splitlines()) == 1

    # The server's 422: the field and the reason, on one line.
    code, _, err = await cli(stack.api, "run", "--detach", "echo", "--env", "1BAD=x")
    assert code == 1 and err.startswith(b"scriptbus: env: ") and len(err.splitlines()) == 1

    code, _, err = await cli(stack.api, "run")
    assert code == 2 and b"nothing to run" in err
    code, _, err = await cli(stack.api, "run", "--timeout", "soon", "true")
    assert code == 2 and b"not a duration" in err and b"Traceback" not in err


async def test_unreachable_api_is_one_clear_line_and_exit_2() -> None:
    api = f"http://127.0.0.1:{free_port()}"
    for args in (["ps"], ["run", "echo hi"], ["logs", "-f", str(uuid.uuid4())], ["commands", "list"]):
        code, out, err = await cli(api, *args)
        assert code == 2, (args, err)
        assert out == b""
        assert err.startswith(f"scriptbus: cannot reach the API at {api}: ".encode()), err
        assert err.endswith(b"; is `scriptbus up` running?\n") and len(err.splitlines()) == 1
    # --api wins over the environment.
    code, _, err = await cli("http://127.0.0.1:1", "--api", api, "ps")
    assert code == 2 and api.encode() in err


async def test_follow_survives_a_gateway_restart_with_every_byte_once(stack: Stack) -> None:
    proc = await spawn(stack.api, "run", "for i in $(seq 1 40); do echo line-$i; echo err-$i >&2; sleep 0.1; done")
    assert proc.stdout is not None and proc.stderr is not None
    first = await read_until(proc.stdout, b"line-5\n")

    # The gateway goes away mid-run and comes back on the same port.
    gateway = stack.services["gateway"]
    gateway.terminate()
    gateway.wait(15)
    port = stack.api.rsplit(":", 1)[1]
    stack.services["gateway"] = stack.start_service("gateway", "--port", port)
    await wait_until_ready(stack.client)

    rest, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert first + rest == b"".join(f"line-{i}\n".encode() for i in range(1, 41))
    assert err == b"".join(f"err-{i}\n".encode() for i in range(1, 41))


async def test_interrupt_detaches_when_not_on_a_terminal(stack: Stack) -> None:
    proc = await spawn(stack.api, "run", "echo started; sleep 60")
    assert proc.stdout is not None and proc.stderr is not None
    await read_until(proc.stdout, b"started\n")
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130
    run_id = re.search(rb"scriptbus logs -f ([0-9a-f-]{36})", err)
    assert run_id, err
    # Detached, not stopped: the run goes on.
    run = await wait_for_status(stack.client, run_id.group(1).decode(), {"running", *TERMINAL})
    assert run["status"] == "running"
    # `logs` without -f prints what is stored so far and returns.
    assert await cli(stack.api, "logs", run["id"]) == (0, b"started\n", b"")
    await stack.client.post(f"/api/v1/runs/{run['id']}/stop")


async def test_interrupt_stops_the_run_with_stop_on_interrupt(stack: Stack) -> None:
    proc = await spawn(
        stack.api, "run", "--stop-on-interrupt", "for i in $(seq 1 100000); do echo line-$i; sleep 0.005; done"
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = await read_until(proc.stdout, b"line-20\n")
    proc.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(proc.communicate(), 30)
    # It follows the run to its end, and ends the way a shell's child killed by SIGTERM does.
    assert proc.returncode == 128 + 15, err
    assert re.fullmatch(
        rb"scriptbus: stopping run [0-9a-f-]{36}\nscriptbus: run [0-9a-f]{8} stopped \(SIGTERM\)\n", err
    ), err
    # Every line up to the stop, none lost or repeated around the interrupt.
    lines = (first + rest).decode().splitlines()
    assert len(lines) >= 20 and lines == [f"line-{i}" for i in range(1, len(lines) + 1)]
    _, out, _ = await cli(stack.api, "ps", "--all", "--json")
    assert json.loads(out)["items"][0]["status"] == "stopped"


class Terminal:
    """The CLI on a pseudo-terminal: stdin, stdout and stderr are all the tty, as in a shell."""

    def __init__(self, api: str, *args: str, **env: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [*SCRIPTBUS, *args], stdin=slave, stdout=slave, stderr=slave, env=cli_env(api, **env)
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, wanted: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            if not self._read(deadline):
                raise AssertionError(f"tty ended before {wanted!r}; got {self.seen!r}")
        return self.seen

    def finish(self, timeout: float = 30) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        os.close(self.master)
        return self.proc.wait(max(0.1, deadline - time.monotonic())), self.seen

    def _read(self, deadline: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"tty quiet until the deadline; got {self.seen!r}")
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: every end of the slave side is closed
            return False
        self.seen += chunk
        return bool(chunk)


async def test_on_a_terminal_a_queued_run_spins_and_ctrl_c_asks_before_stopping(stack: Stack) -> None:
    term = Terminal(stack.api, "run", "--pool", "nobody-serves-this", "echo never")
    term.read_until(b"queued: ")
    term.proc.send_signal(signal.SIGINT)
    term.read_until(b"? [y/N] ")
    os.write(term.master, b"y\n")
    code, seen = term.finish()
    text = seen.decode(errors="replace")
    assert code == 1, text
    run_id = re.search(r"stop run ([0-9a-f-]{36})\? \[y/N\]", text)
    assert run_id, text
    assert f"scriptbus: cancelled run {run_id.group(1)}" in text
    assert f"scriptbus: run {run_id.group(1)[:8]} cancelled" in text.splitlines()[-1]
    # The spinner said why it waited, and was erased before anything else was written.
    assert "queued: no live executor serves pool 'nobody-serves-this'" in text
    assert "\r\x1b[2K\r\nstop run" in text or "\r\x1b[2K\nstop run" in text
    assert "never" not in text

    # Tables are coloured on a terminal, unless NO_COLOR says otherwise.
    code, seen = Terminal(stack.api, "ps", "--all").finish()
    assert code == 0 and b"\x1b[2mcancelled\x1b[0m" in seen
    code, seen = Terminal(stack.api, "ps", "--all", NO_COLOR="1").finish()
    assert code == 0 and b"cancelled" in seen and b"\x1b[" not in seen


async def test_saved_commands_from_create_to_run_with_args(stack: Stack, tmp_path: Path) -> None:
    name = f"greet-{uuid.uuid4().hex[:6]}"
    code, out, err = await cli(
        stack.api,
        "commands",
        "create",
        name,
        "--script",
        'printf "[%s]\\n" "$@"; echo "$WHO"',
        "--description",
        "says hello",
        "--env",
        "WHO=world",
    )
    assert code == 0, err
    assert out.decode().startswith(f"created command {name} (")

    # $1 keeps its space; the run's env overrides the command's.
    code, out, err = await cli(stack.api, "run", "--command", name, "--", "a b", "c")
    assert (code, out, err) == (0, b"[a b]\n[c]\nworld\n", b"")
    code, out, err = await cli(stack.api, "run", "--command", name, "-e", "WHO=you", "--", "x")
    assert (code, out, err) == (0, b"[x]\nyou\n", b"")

    code, out, _ = await cli(stack.api, "commands", "list", "--json")
    assert [c["name"] for c in json.loads(out)["items"]] == [name]
    code, out, _ = await cli(stack.api, "commands", "list")
    assert out.decode().splitlines()[1].split()[:3] == [name, "1", "default"]
    code, out, _ = await cli(stack.api, "commands", "show", name)
    assert b"says hello" in out and b'printf "[%s]\\n" "$@"' in out and b"WHO=world" in out

    # edit replaces only what it is given; the runs list filters by command name.
    script = tmp_path / "new.sh"
    script.write_text('echo "v2 $WHO $1"\n')
    code, out, err = await cli(stack.api, "commands", "edit", name, "-f", str(script))
    assert code == 0 and b"version 2" in out, err
    code, out, _ = await cli(stack.api, "run", "--command", name, "--", "z")
    assert out == b"v2 world z\n"
    code, out, _ = await cli(stack.api, "ps", "--all", "--command", name, "--json")
    assert len(json.loads(out)["items"]) == 3
    code, _, err = await cli(stack.api, "commands", "edit", name)
    assert code == 2 and b"nothing to change" in err
    # On a terminal, edit with no options opens $EDITOR on the script.
    code, seen = Terminal(stack.api, "commands", "edit", name, EDITOR="sed -i s/v2/v3/", VISUAL="").finish()
    assert code == 0 and b"updated command" in seen and b"(version 3)" in seen, seen
    assert (await cli(stack.api, "run", "--command", name, "--", "y"))[1] == b"v3 world y\n"

    # A taken name is the server's 409, on one line.
    code, _, err = await cli(stack.api, "commands", "create", name, "--script", "true")
    assert code == 1 and err == f"scriptbus: command name '{name}' is taken\n".encode()

    assert (await cli(stack.api, "commands", "rm", name))[0] == 0
    code, _, err = await cli(stack.api, "run", "--command", name)
    assert code == 1 and err == f"scriptbus: command '{name}' not found\n".encode()


async def test_executors_lists_the_fleet(stack: Stack) -> None:

    async def listed() -> dict[str, dict[str, Any]]:
        code, out, err = await cli(stack.api, "executors", "--json")
        assert code == 0, err
        hosts: dict[str, dict[str, Any]] = {e["host"]: e for e in json.loads(out)["items"]}
        assert "local" in hosts, hosts
        return hosts

    hosts = await eventually(listed, 30, interval=0.2, what="executor 'local' listed")
    assert hosts["local"]["state"] == "online"
    code, out, _ = await cli(stack.api, "executors")
    lines = out.decode().splitlines()
    assert lines[0].split() == ["HOST", "STATE", "POOLS", "RUNNING", "HEARTBEAT", "VERSION"]
    row = next(line.split() for line in lines[1:] if line.startswith("local "))
    assert (
        row[1] == "online" and "default" in row[2].split(",") and row[3].endswith("/" + str(hosts["local"]["capacity"]))
    )


async def test_token_from_option_or_environment(stack: Stack) -> None:
    port = free_port()
    stack.start_service("gateway", "--port", str(port), env={"SCRIPTBUS_API_TOKENS": "s3cret,other"})
    api = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        await wait_until_ready(client)
    code, _, err = await cli(api, "ps")
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(b"scriptbus: ") and err.endswith(b"(pass --token or set SCRIPTBUS_TOKEN)\n")
    assert (await cli(api, "ps", "--token", "s3cret"))[0] == 0
    assert await cli(api, "run", "echo ok", env=cli_env(api, SCRIPTBUS_TOKEN="other")) == (0, b"ok\n", b"")


async def test_tokens_create_list_revoke_and_roles(stack: Stack) -> None:
    api = stack.api
    code, out, err = await cli(api, "tokens", "create", "--role", "admin", "--name", "ops")
    assert code == 0, err
    admin = out.decode().strip()
    # The token alone on stdout (for `$(…)`), once; what it is and how to use it on stderr.
    assert re.fullmatch(r"sb_[A-Za-z0-9_-]{40,}", admin) and b"only this once" in err
    as_admin = cli_env(api, SCRIPTBUS_TOKEN=admin)
    code, out, err = await cli(api, "tokens", "create", "--role", "read", "--name", "auditor", env=as_admin)
    assert code == 0, err
    reader = cli_env(api, SCRIPTBUS_TOKEN=out.decode().strip())

    code, out, _ = await cli(api, "tokens", "list", env=as_admin)
    lines = out.decode().splitlines()
    assert lines[0].split() == ["ID", "ROLE", "NAME", "CREATED", "BY", "REVOKED"]
    assert sorted(line.split()[1:3] for line in lines[1:]) == [["admin", "ops"], ["read", "auditor"]]
    assert admin not in out.decode()

    # A read token sees runs, and is told which role starting one needs.
    assert (await cli(api, "ps", env=reader))[0] == 0
    code, _, err = await cli(api, "run", "echo no", env=reader)
    assert (code, err) == (1, b"scriptbus: this needs the 'run' role; the token has 'read'\n")
    assert await cli(api, "run", "echo ok", env=as_admin) == (0, b"ok\n", b"")

    code, out, err = await cli(api, "tokens", "revoke", "auditor", env=as_admin)
    assert code == 0 and out.startswith(b"revoked token "), err
    code, _, err = await cli(api, "ps", env=reader)
    assert code == 1 and err.endswith(b"(pass --token or set SCRIPTBUS_TOKEN)\n")
    code, out, _ = await cli(api, "tokens", "list", "--revoked", "--json", env=as_admin)
    revoked = {t["name"]: t["revoked_by"] for t in json.loads(out)["items"]}
    assert revoked == {"ops": "", "auditor": "ops"}
