"""The credentials `scriptbus up` makes at first start and keeps in `<data dir>/credentials` (0700, files 0600).

- `nats-<name>.nk`: an nkey seed per NATS user (gateway, recorder, scheduler, the local executor, reader,
  and remote executors made by `scriptbus nats-user executor`). The server config holds only public keys.
- `nats-users.json`: who is who (role, public key, and for executors their host and pools); the
  nats-server authorization block is rendered from it at every start and on `scriptbus nats-user`.
- `postgres-password` and `pgpass`: the embedded PostgreSQL's superuser password, and the same as a
  libpq/asyncpg password file, which services get as `PGPASSFILE` (never in an argument or the URL).

Why nkeys rather than user/password: the server's config holds no secret (a leaked config or
`nats-users.json` lets nobody in), a seed never crosses the wire (the server sends a nonce the client
signs), and a remote executor's seed is made on its own and only its public key is registered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import nkeys

from scriptbus.events.nats_users import NatsUser, Role, render_authorization
from scriptbus.events.subjects import Subjects, valid_token

SERVICE_ROLES = (Role.GATEWAY, Role.RECORDER, Role.SCHEDULER, Role.READER)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600) from the first byte, replacing atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def new_seed() -> str:
    """A fresh nkey user seed (`SU...`)."""
    return str(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode())


def public_key_of(seed_file: Path) -> str:
    return str(nkeys.from_seed(bytearray(seed_file.read_bytes().strip())).public_key.decode())


class Credentials:
    """The credentials folder of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "credentials"
        self.registry = self.dir / "nats-users.json"
        self.pg_password_file = self.dir / "postgres-password"
        self.pgpass = self.dir / "pgpass"
        # Included by the embedded nats-server's config; rendered from the registry.
        self.nats_authorization = data_dir / "nats" / "authorization.conf"

    def ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.chmod(0o700)

    def seed_file(self, name: str) -> Path:
        return self.dir / f"nats-{name}.nk"

    def _seed(self, name: str) -> Path:
        """The seed file of user `name`, made if missing (kept across restarts)."""
        path = self.seed_file(name)
        if not path.exists():
            write_private(path, new_seed() + "\n")
        path.chmod(0o600)
        return path

    def users(self) -> dict[str, NatsUser]:
        """Registered users by name (`gateway`, …, `executor-<host>`)."""
        try:
            raw = json.loads(self.registry.read_text())
        except FileNotFoundError:
            return {}
        return {
            name: NatsUser(Role(u["role"]), u["public_key"], u.get("host", ""), tuple(u.get("pools", ())))
            for name, u in raw.items()
        }

    def _save(self, users: dict[str, NatsUser]) -> None:
        raw = {
            name: {k: v for k, v in dataclasses.asdict(u).items() if v or k in ("role", "public_key")}
            for name, u in sorted(users.items())
        }
        write_private(self.registry, json.dumps(raw, indent=2) + "\n")

    def register(self, name: str, user: NatsUser) -> None:
        users = self.users()
        users[name] = user
        self._save(users)

    def ensure_local_users(self, host: str, pools: Iterable[str]) -> dict[str, Path]:
        """Seeds for the services `up` runs and the reader (made at first start), registered with the
        local executor's current host and pools. Returns each role's seed file."""
        self.ensure_dir()
        files = {role.value: self._seed(role.value) for role in SERVICE_ROLES}
        files[Role.EXECUTOR.value] = self._seed(f"executor-{host}")
        users = self.users()
        for role in SERVICE_ROLES:
            users[role.value] = NatsUser(role, public_key_of(files[role.value]))
        users[f"executor-{host}"] = NatsUser(
            Role.EXECUTOR, public_key_of(files[Role.EXECUTOR.value]), host, tuple(pools)
        )
        self._save(users)
        return files

    def add_executor(self, host: str, pools: Iterable[str], seed_out: Path | None = None) -> tuple[Path, NatsUser]:
        """Make (or keep) the seed of an executor for `host` serving `pools`, and register its public key."""
        pools = tuple(pools)
        for token in (host, *pools):
            if not valid_token(token):
                raise ValueError(f"{token!r} must match [A-Za-z0-9_-]{{1,128}}")
        self.ensure_dir()
        path = seed_out or self.seed_file(f"executor-{host}")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, new_seed() + "\n")
        user = NatsUser(Role.EXECUTOR, public_key_of(path), host, pools)
        self.register(f"executor-{host}", user)
        return path, user

    def write_authorization(self, subjects: Subjects) -> Path:
        """Render the registered users into the nats-server authorization file; returns its path."""
        self.nats_authorization.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.nats_authorization, render_authorization(subjects, self.users().values()))
        return self.nats_authorization

    def postgres_password(self) -> str:
        """The embedded PostgreSQL's password (made at first start), with its `pgpass` file beside it."""
        self.ensure_dir()
        if not self.pg_password_file.exists():
            write_private(self.pg_password_file, secrets.token_urlsafe(32) + "\n")
        password = self.pg_password_file.read_text().strip()
        # Any host, port and database: the embedded server's port may change between starts.
        write_private(self.pgpass, f"*:*:*:postgres:{password}\n")
        return password
