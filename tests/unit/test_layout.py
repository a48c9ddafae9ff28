"""The folders of the layout and the one `scriptbus` import package: what the wheel installs and what
mypy and editors read from the checkout must be the same files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
MAPPED = {name: folder for name, folder in SETUPTOOLS["package-dir"].items() if name.replace(".", "/") != folder}


@pytest.mark.parametrize("name", sorted(MAPPED))
def test_each_mapped_folder_is_linked_where_its_import_name_points(name: str) -> None:
    link = ROOT / name.replace(".", "/")
    assert link.is_symlink(), f"{link.relative_to(ROOT)} must be a symlink to {MAPPED[name]} (mypy reads through it)"
    # Relative, so the link holds in every clone and in the Docker build context.
    assert not Path(link.readlink()).is_absolute()
    assert link.resolve() == (ROOT / MAPPED[name]).resolve()


def test_every_package_folder_is_installed() -> None:
    found = set()
    for name, folder in SETUPTOOLS["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found == set(SETUPTOOLS["packages"])
