"""The rule for a run's `env`, as the gateway and the executor apply it: names bash or the loader read
are refused for everyone; PATH and interpreters' code paths only for admins."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from scriptbus.events.run_env import admin_only_names, refusal, refused_names, valid_name
from scriptbus.gateway.auth import Caller, Role
from scriptbus.gateway.env_access import check_run_env

REFUSED = [
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "GLOBIGNORE", "CDPATH",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "BASH_FUNC_ls%%", "BASH_FUNC_x", "ls()", "GCONV_PATH",
]  # fmt: skip
ALLOWED = ["GREETING", "LEVEL", "HOME", "LANG", "ld_preload_note", "OLD_PWD", "ENVIRONMENT", "MY_IFS", "PS1"]


@pytest.mark.parametrize("name", REFUSED)
def test_names_bash_or_the_loader_read_are_refused(name: str) -> None:
    assert refused_names({name: "x", "FINE": "y"}) == [name]
    why = refusal([name, "FINE"])
    assert why is not None and name in why and "FINE" not in why


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_names_pass(name: str) -> None:
    assert refusal([name]) is None
    assert admin_only_names([name]) == []


def test_exported_function_names_are_not_valid_names_either() -> None:
    assert not valid_name("BASH_FUNC_x%%")
    assert not valid_name("x()")
    assert valid_name("_A1")


@pytest.mark.parametrize("role", [Role.read, Role.run])
def test_path_from_a_caller_below_admin_is_a_403_naming_it(role: Role) -> None:
    with pytest.raises(HTTPException) as caught:
        check_run_env(Caller(role), {"PATH": "/tmp/evil:/usr/bin", "PYTHONPATH": "/tmp", "A": "b"})
    assert caught.value.status_code == 403
    assert "body.env" in caught.value.detail
    assert "PATH, PYTHONPATH" in caught.value.detail
    assert "admin" in caught.value.detail
    check_run_env(Caller(role), {"A": "b"})


def test_an_admin_may_set_path() -> None:
    check_run_env(
        Caller(Role.admin), {"PATH": "/opt/tools/bin:/usr/bin:/bin", "NODE_OPTIONS": "--max-old-space-size=64"}
    )
