"""Who scripts run as. An executor running as root runs them as an unprivileged user (by default the
system user `scriptbus-run`, made when missing), so a script can read neither the executor's environment
(`/proc/<pid>/environ`: tokens, URLs) nor the services' files. Not root: scripts run as the executor's
own user, which does not isolate them from it."""

from __future__ import annotations

import functools
import grp
import logging
import os
import pwd
import shutil
from dataclasses import dataclass

from scriptbus.system_users import ensure_system_user

log = logging.getLogger(__name__)

DEFAULT_RUN_AS = "scriptbus-run"
# util-linux: changes user in a process that then execs, so the spawn needs no Python in the child.
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


@dataclass(frozen=True)
class RunAs:
    """The user scripts switch to in the forked child, before bash starts."""

    name: str
    uid: int
    gid: int
    # The user's own supplementary groups: none of the executor's survive.
    groups: tuple[int, ...]

    def drop(self) -> None:
        """In the child: groups first, then gid, then uid (after which neither could change)."""
        os.setgroups(self.groups)
        os.setgid(self.gid)
        os.setuid(self.uid)

    def exec_argv(self, argv: list[str]) -> list[str] | None:
        """`argv` exec'd as this user by `setpriv` (same groups, gid, uid as `drop`, in the same process:
        the program's first instruction already runs as the user); None without setpriv."""
        if SETPRIV is None:
            return None
        return [SETPRIV, *self._setpriv_ids, "--", *argv]

    @functools.cached_property
    def _setpriv_ids(self) -> list[str]:
        """setpriv's user, group and groups, each by name where the name leads back to the same id: setpriv
        looks an argument up as a name before it reads it as a number, so a number has glibc ask every NSS
        source (systemd's userdb, an LDAP server) for a user or group of that name at every spawn (0.25 ms
        of the spawn here, where a name is found in /etc/passwd at once)."""
        user = self.name if _uid_of(self.name) == self.uid else str(self.uid)
        groups = f"--groups={','.join(map(_group_arg, self.groups))}" if self.groups else "--clear-groups"
        return [f"--reuid={user}", f"--regid={_group_arg(self.gid)}", groups]


def _uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _group_arg(gid: int) -> str:
    """The group's name for setpriv when it names this gid, else the number."""
    try:
        name = grp.getgrgid(gid).gr_name
        if grp.getgrnam(name).gr_gid == gid:
            return name
    except KeyError:
        pass
    return str(gid)


def _own_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def resolve(setting: str | None) -> RunAs | None:
    """The user scripts run as for `--run-as setting`, or None when they run as the executor's own user.
    ValueError (a message for the operator) when `setting` cannot be honoured."""
    if os.geteuid() != 0:
        own = _own_name()
        if setting not in (None, own):
            raise ValueError(f"--run-as {setting} needs the executor to run as root (it runs as {own})")
        log.info("scripts run as the executor's own user %s (not isolated from the executor)", own)
        return None
    name = setting or DEFAULT_RUN_AS
    try:
        user = ensure_system_user(name) if name == DEFAULT_RUN_AS else pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"--run-as {name}: no such user") from None
    except OSError as exc:
        raise ValueError(f"{exc}, or name another user with --run-as") from None
    if user.pw_uid == 0:
        log.warning("scripts run as root (--run-as %s): they can read the executor's environment and files", name)
        return None
    groups = tuple(sorted(set(os.getgrouplist(user.pw_name, user.pw_gid))))
    log.info("scripts run as %s (uid %d, gid %d)", user.pw_name, user.pw_uid, user.pw_gid)
    return RunAs(user.pw_name, user.pw_uid, user.pw_gid, groups)
