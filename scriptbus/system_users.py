"""System users that scriptbus creates for what must not run as root (scripts, like the database)."""

from __future__ import annotations

import pwd
import subprocess


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The system user `name`, created (no home, no login shell) when missing; OSError saying what to do
    when it cannot be made."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        try:
            return pwd.getpwnam(name)  # another process made it meanwhile
        except KeyError:
            raise OSError(f"cannot create system user {name!r} ({detail}); create it yourself") from None
    return pwd.getpwnam(name)
