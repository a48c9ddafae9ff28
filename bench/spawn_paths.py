"""Spawn paths for a run's bash, measured in isolation: spawns/s of `bash -c true`, interleaved rounds.

    sudo python bench/spawn_paths.py [--runs 100] [--rounds 5] [--ballast-mb 40]

Needs root, a cgroup2 mount and the `scriptbus-run` user (the executor makes it). The process carries
`--ballast-mb` of touched memory and the executor's imports, so a full fork costs what it costs the
executor (~45 MB). Every path pipes stdout/stderr, reads them to EOF and reaps the child; the cgroup
paths make and remove a cgroup per spawn, as the executor does. Medians per path, and their ratio to
the raw `bash -c true` spawn (no cgroup, no user change) measured in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import scriptbus.executor.service  # noqa: F401  (the executor's imports: its fork cost)
from scriptbus.executor.cgroups import GATE_ENV, CgroupTree, RunCgroup, join_cgroup
from scriptbus.executor.process import _start
from scriptbus.executor.run_as import RunAs

BASH = shutil.which("bash") or "/bin/bash"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def _run(
    argv: list[str], preexec: Callable[[], None] | None = None, join: RunCgroup | None = None,
    gate: Path | None = None, **switch: Any,
) -> None:  # fmt: skip
    """One spawn the way the executor's `process._start` does it (into `join` through the cgroup `gate`),
    then its pipes read to EOF and reaped."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8"}
    if gate is not None:
        env[GATE_ENV] = str(gate)
    p, pidfd = _start(argv, env, Path("/"), preexec, switch, join.procs if join is not None else None)
    _out, err = p.communicate()
    if pidfd >= 0:
        os.close(pidfd)
    if p.returncode != 0:
        raise RuntimeError(f"{argv}: {p.returncode} {err!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ballast-mb", type=int, default=40)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    ballast = bytearray(os.urandom(1024 * 1024)) * args.ballast_mb  # touched, so mapped
    user = pwd.getpwnam("scriptbus-run")
    who = RunAs(user.pw_name, user.pw_uid, user.pw_gid, tuple(sorted(set(os.getgrouplist(user.pw_name, user.pw_gid)))))
    gate_dir = Path(tempfile.mkdtemp(prefix="scriptbus-gate-"))
    gate_dir.chmod(0o711)
    tree = CgroupTree.create(gate_dir, who)
    n = 0

    def cgroup() -> RunCgroup:
        nonlocal n
        n += 1
        return tree.make(f"bench-{os.getpid()}-{n}")

    def raw() -> None:
        _run([BASH, "-c", "true"])

    def raw_cgroup() -> None:  # the cgroup's mkdir/rmdir alone, for scale
        cg = cgroup()
        try:
            _run([BASH, "-c", "true"])
        finally:
            cg.remove()

    def today_cgroup() -> None:  # (a) preexec: join the cgroup, drop to the user — a full fork
        cg = cgroup()
        fd = os.open(cg.procs, os.O_WRONLY | os.O_CLOEXEC)

        def pre() -> None:
            join_cgroup(fd)
            who.drop()

        try:
            _run([BASH, "-c", "true"], preexec=pre)
        finally:
            os.close(fd)
            cg.remove()

    def today_user() -> None:  # (a') subreaper mode: user=/group= in C, still a full fork
        _run([BASH, "-c", "true"], user=who.uid, group=who.gid, extra_groups=list(who.groups))

    def wrapper_cgroup() -> None:  # (b) vfork: setpriv drops, bash waits at the gate while we move it
        cg = cgroup()
        try:
            chain = who.exec_argv([BASH, "-c", "true"])
            assert chain is not None
            _run(chain, join=cg, gate=tree.gate)
        finally:
            cg.remove()

    def wrapper_user() -> None:  # (b') vfork: setpriv only (subreaper mode with a run user)
        chain = who.exec_argv([BASH, "-c", "true"])
        assert chain is not None
        _run(chain)

    paths: dict[str, Callable[[], None]] = {
        "raw bash -c true (vfork, no cgroup, root)": raw,
        "raw + a cgroup made and removed (not joined)": raw_cgroup,
        "(a) today, cgroup: preexec join + drop (fork)": today_cgroup,
        "(a') today, subreaper: user=/group= (fork)": today_user,
        "(b) cgroup: setpriv drop, moved at the gate (vfork)": wrapper_cgroup,
        "(b') subreaper: setpriv drop (vfork)": wrapper_user,
    }
    rates: dict[str, list[float]] = {name: [] for name in paths}
    rates["(c) forkserver bound: (a) from a bare python"] = []
    for _ in range(args.rounds):
        for name, fn in paths.items():
            fn()  # warm
            t0 = time.perf_counter()
            for _ in range(args.runs):
                fn()
            rates[name].append(args.runs / (time.perf_counter() - t0))
        cg = cgroup()
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", _SMALL, str(cg.path), str(who.uid), str(who.gid), str(args.runs), BASH],
            check=True,
        )
        rates["(c) forkserver bound: (a) from a bare python"].append(args.runs / (time.perf_counter() - t0))
        for p in cg.path.iterdir():
            if p.is_dir():
                p.rmdir()
        cg.remove()
    del ballast
    raw_rate = statistics.median(rates["raw bash -c true (vfork, no cgroup, root)"])
    print(f"{'path':50} {'spawns/s':>9} {'ratio':>6}")
    for name, rs in rates.items():
        med = statistics.median(rs)
        print(f"{name:50} {med:9.0f} {med / raw_rate:6.2f}")


# A bare interpreter forking `runs` children the way (a) does: what a forkserver could reach at best
# (its request/reply traffic and exit-status relay not counted).
_SMALL = """
import os, sys, subprocess
base, uid, gid, runs, bash = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
for i in range(runs):
    d = f"{base}/{i}"
    os.mkdir(d)
    fd = os.open(d + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
    def pre():
        os.write(fd, b"0"); os.setgroups([gid]); os.setgid(gid); os.setuid(uid)
    p = subprocess.Popen([bash, "-c", "true"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True, preexec_fn=pre, env={})
    p.communicate()
    os.close(fd)
    os.rmdir(d)
"""

if __name__ == "__main__":
    main()
