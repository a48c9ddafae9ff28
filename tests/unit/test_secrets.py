"""Secret names, values and the sealed box, without servers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from scriptbus.events.secret_box import (
    SecretKeyError,
    ensure_key_pair,
    load_private_key,
    load_public_key,
    seal,
    unseal,
)
from scriptbus.events.secrets import MAX_SECRET_BYTES, secret_name_problem, secret_value_problem


@pytest.mark.parametrize("name", ["DB_PASSWORD", "_x", "a1", "A" * 128])
def test_environment_variable_names_can_name_secrets(name: str) -> None:
    assert secret_name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "1ABC", "A-B", "A.B", "A" * 129, "BASH_ENV", "LD_PRELOAD", "ld_library_path", "BASH_FUNC_x", "PATH"]
)
def test_bad_or_dangerous_names_are_refused(name: str) -> None:
    assert secret_name_problem(name) is not None


def test_values_with_nul_or_too_large_are_refused() -> None:
    assert secret_value_problem("a\x00b") is not None
    assert secret_value_problem("x" * (MAX_SECRET_BYTES + 1)) is not None
    assert secret_value_problem("x" * MAX_SECRET_BYTES) is None
    assert secret_value_problem("pässwörd ✓") is None


def test_key_pair_files_are_made_once_and_the_private_one_is_0600(tmp_path: Path) -> None:
    private, public = ensure_key_pair(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    first = private.read_bytes(), public.read_bytes()
    assert ensure_key_pair(tmp_path / "keys") == (private, public)
    assert (private.read_bytes(), public.read_bytes()) == first
    public.unlink()
    ensure_key_pair(tmp_path / "keys")
    assert public.read_bytes() == first[1]


def test_only_the_private_key_opens_a_sealed_value_and_only_under_its_name(tmp_path: Path) -> None:
    private, public = ensure_key_pair(tmp_path)
    sealed = seal(load_public_key(public), "DB_PASSWORD", "hunter2 ✓")
    assert b"hunter2" not in sealed
    assert unseal(load_private_key(private), "DB_PASSWORD", sealed) == "hunter2 ✓"
    with pytest.raises(SecretKeyError, match="another secret"):
        unseal(load_private_key(private), "OTHER", sealed)
    other_private, _ = ensure_key_pair(tmp_path / "other")
    with pytest.raises(SecretKeyError, match="another key pair"):
        unseal(load_private_key(other_private), "DB_PASSWORD", sealed)


def test_a_private_key_others_may_read_is_refused(tmp_path: Path) -> None:
    private, _ = ensure_key_pair(tmp_path)
    private.chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        load_private_key(private)


def test_a_file_that_is_no_key_is_refused_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key\n")
    with pytest.raises(SecretKeyError, match="32 bytes"):
        load_public_key(bad)
    with pytest.raises(SecretKeyError, match="SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE"):
        load_public_key(tmp_path / "missing.pub")
