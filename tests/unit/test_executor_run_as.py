"""Who scripts run as, decided once at the executor's start."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from scriptbus.executor.run_as import DEFAULT_RUN_AS, SETPRIV, RunAs, resolve

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users")


@root_only
def test_root_runs_scripts_as_the_dedicated_user_by_default() -> None:
    run_as = resolve(None)
    assert run_as is not None
    user = pwd.getpwnam(DEFAULT_RUN_AS)
    assert (run_as.name, run_as.uid, run_as.gid) == (DEFAULT_RUN_AS, user.pw_uid, user.pw_gid)
    assert run_as.uid != 0 and 0 not in run_as.groups
    assert run_as.groups == tuple(sorted(set(os.getgrouplist(DEFAULT_RUN_AS, user.pw_gid))))


@root_only
def test_run_as_root_is_an_explicit_opt_out(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve("root") is None
    assert "scripts run as root" in caplog.text


@root_only
def test_an_unknown_user_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="--run-as no-such-user-here: no such user"):
        resolve("no-such-user-here")


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, scripts can switch")
def test_not_root_scripts_run_as_the_executors_own_user() -> None:
    assert resolve(None) is None
    with pytest.raises(ValueError, match="needs the executor to run as root"):
        resolve("root")


@pytest.mark.skipif(SETPRIV is None, reason="no setpriv here")
def test_setpriv_is_given_names_that_lead_back_to_the_ids_and_numbers_otherwise() -> None:
    # setpriv looks a number up as a name first: a name found in /etc/passwd spares every NSS source the
    # search at each spawn; where the name would not lead back to the same id, the number it must be.
    me = pwd.getpwuid(os.getuid())
    group = grp.getgrgid(me.pw_gid).gr_name
    named = RunAs(me.pw_name, me.pw_uid, me.pw_gid, (me.pw_gid,))
    assert named.exec_argv(["bash"]) == [
        SETPRIV, f"--reuid={me.pw_name}", f"--regid={group}", f"--groups={group}", "--", "bash"
    ]  # fmt: skip
    unnamed = _free_gid()
    other = RunAs(me.pw_name, me.pw_uid + 12345, unnamed, ())
    assert other.exec_argv(["bash"]) == [
        SETPRIV, f"--reuid={me.pw_uid + 12345}", f"--regid={unnamed}", "--clear-groups", "--", "bash"
    ]  # fmt: skip


def _free_gid() -> int:
    gid = 60000
    while True:
        try:
            grp.getgrgid(gid)
        except KeyError:
            return gid
        gid += 1
