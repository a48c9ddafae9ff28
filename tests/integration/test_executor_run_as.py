"""Scripts run without the executor's privileges: an executor running as root runs them as an unprivileged
user that can read neither its environment nor its journal and work dir, with cgroups and without;
`--run-as root` keeps the old behaviour; a request whose `env` would change how bash or the loader start
is refused by the executor itself, never run."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from scriptbus.events import OutputStream, RunStarted, RunStatus
from scriptbus.executor.run_as import DEFAULT_RUN_AS
from tests.helpers.executor import request_run, start_executor, wait_run
from tests.helpers.servers import Bus

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="scripts change user only under a root executor")

MODES = {"cgroup": {}, "subreaper": {"SCRIPTBUS_EXECUTOR_CGROUPS": "off"}}
SECRET = "hunter2-executor-only"


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def report(output: bytes) -> dict[str, str]:
    """`key=value` lines of a script's output. Give it stdout alone: stdout and stderr are two pipes, so the
    both-streams output can put a stdout line inside a stderr line that was written in parts (GNU `ls`
    writes its error message and the newline that ends it separately)."""
    return dict(line.split("=", 1) for line in output.decode().splitlines() if "=" in line)


async def test_scripts_run_as_the_unprivileged_user_in_their_own_folder(
    bus: Bus, start_service: Any, work_dir: Path, mode: str
) -> None:
    _nc, js, s = bus
    executor = await start_executor(start_service, env=MODES[mode])
    script = (
        'echo "uid=$(id -u)"; echo "user=$(id -un)"; echo "groups=$(id -G)"; echo "home=$HOME"; '
        'echo "pwd=$(pwd)"; echo "names=$USER $LOGNAME"; echo "folder=$(stat -c "%U %a" "$HOME")"; '
        'touch "$HOME/mine" && echo "writes=yes"'
    )
    request = await request_run(js, s, script)
    record = await wait_run(js, s, request.run_id)

    assert record.finished.status == RunStatus.SUCCEEDED, record.output()
    got = report(record.output(OutputStream.STDOUT))
    user = pwd.getpwnam(DEFAULT_RUN_AS)
    assert got["uid"] == str(user.pw_uid) != "0"
    assert got["user"] == got["names"].split()[0] == got["names"].split()[1] == DEFAULT_RUN_AS
    assert set(got["groups"].split()) == {str(g) for g in os.getgrouplist(DEFAULT_RUN_AS, user.pw_gid)}
    assert "0" not in got["groups"].split()
    assert got["home"] == got["pwd"] == str(work_dir / request.run_id)
    assert got["folder"] == f"{DEFAULT_RUN_AS} 700"
    assert got["writes"] == "yes"
    assert f"run as {DEFAULT_RUN_AS}" in executor.log()


async def test_a_script_reads_neither_the_executors_environment_nor_its_files(
    bus: Bus, start_service: Any, work_dir: Path, mode: str
) -> None:
    _nc, js, s = bus
    executor = await start_executor(start_service, env={**MODES[mode], "EXECUTOR_SECRET": SECRET})
    script = (
        'cat "/proc/$PPID/environ"; echo "parent_environ=$?"; '
        'cat "/proc/$EXECUTOR/environ"; echo "executor_environ=$?"; '
        'ls -a "$WORK"; echo "list_work=$?"; '
        'ls -a "$WORK/.journal"; echo "list_journal=$?"; '
        'cat "$WORK"/.journal/*/runs.jsonl; echo "read_journal=$?"'
    )
    request = await request_run(js, s, script, env={"EXECUTOR": str(executor.pid), "WORK": str(work_dir)})
    record = await wait_run(js, s, request.run_id)

    output = record.output()
    assert SECRET.encode() not in output
    assert b"SCRIPTBUS_NATS_URL" not in output
    got = report(record.output(OutputStream.STDOUT))
    for what in ("parent_environ", "executor_environ", "list_work", "list_journal", "read_journal"):
        assert got.get(what, "missing") not in ("0", "missing"), (what, record.finished, output)
    assert record.output(OutputStream.STDERR).count(b"Permission denied") >= 4, output
    # Other runs' folders cannot be reached either: each is its run's alone.
    assert oct((work_dir / ".journal").stat().st_mode & 0o777) == "0o700"
    assert oct(work_dir.stat().st_mode & 0o777) == "0o711"


async def test_run_as_root_keeps_the_executors_rights(bus: Bus, start_service: Any) -> None:
    _nc, js, s = bus
    executor = await start_executor(start_service, "--run-as", "root", env={"EXECUTOR_SECRET": SECRET})
    request = await request_run(js, s, 'echo "uid=$(id -u)"; tr "\\0" "\\n" < "/proc/$PPID/environ"')
    record = await wait_run(js, s, request.run_id)

    assert record.finished.status == RunStatus.SUCCEEDED
    assert report(record.output(OutputStream.STDOUT))["uid"] == "0"
    assert f"EXECUTOR_SECRET={SECRET}".encode() in record.output()
    assert "scripts run as root (--run-as root)" in executor.log()


async def test_another_user_by_name(bus: Bus, start_service: Any) -> None:
    _nc, js, s = bus
    await start_executor(start_service, env={"SCRIPTBUS_EXECUTOR_RUN_AS": "nobody"})
    request = await request_run(js, s, 'echo "user=$(id -un)"')
    record = await wait_run(js, s, request.run_id)
    assert report(record.output(OutputStream.STDOUT))["user"] == "nobody"


async def test_an_unknown_user_stops_the_executor_with_a_clear_message(start_service: Any) -> None:
    executor = start_service("executor", "--run-as", "no-such-user-here")
    assert executor.wait(60) != 0
    assert "--run-as no-such-user-here: no such user" in executor.log()


async def test_a_forged_request_with_a_refused_env_never_runs(
    bus: Bus, start_service: Any, exchange_dir: Path, mode: str
) -> None:
    """A request published straight on NATS, past the gateway's checks."""
    _nc, js, s = bus
    await start_executor(start_service, "--run-as", "root", env=MODES[mode])
    injected = exchange_dir / "injected.sh"
    injected.write_text(f'touch "{exchange_dir}/injected"\n')
    env = {
        "BASH_ENV": str(injected),
        "LD_PRELOAD": "/nonexistent/evil.so",
        "BASH_FUNC_echo%%": f'() {{ touch "{exchange_dir}/function"; }}',
        "FINE": "yes",
    }
    request = await request_run(js, s, f'echo hi; touch "{exchange_dir}/ran"', env=env)
    record = await wait_run(js, s, request.run_id)

    finished = record.finished
    assert finished.status == RunStatus.FAILED
    assert "refused" in finished.reason
    for name in ("BASH_ENV", "BASH_FUNC_echo%%", "LD_PRELOAD"):
        assert name in finished.reason
    assert "FINE" not in finished.reason
    assert record.of(RunStarted) == []
    assert record.output() == b""
    assert sorted(p.name for p in exchange_dir.iterdir()) == ["injected.sh"]
