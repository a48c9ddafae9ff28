"""File names, artifact patterns and `cp` locations, as pure rules."""

from __future__ import annotations

import pytest

from scriptbus.client.files import Remote, parse_location
from scriptbus.events.files import matches, name_problem, pattern_problem


@pytest.mark.parametrize("name", ["tool.sh", "bin/tool.sh", "a b/ü.txt", ".env", "x" * 512])
def test_relative_paths_name_files(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a/", ".", "a\x00b", "a\nb", "a\\b", "x" * 513]
)
def test_anything_that_could_leave_the_folder_or_confuse_is_refused(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.log", "app.log", True),
        ("*.log", "logs/app.log", False),
        ("logs/*.log", "logs/app.log", True),
        ("out/**", "out/a/b/c.bin", True),
        ("**/*.log", "app.log", True),
        ("**/*.log", "a/b/app.log", True),
        ("report-?.[ct]sv", "report-1.csv", True),
        ("report-?.[ct]sv", "report-10.csv", False),
    ],
)
def test_patterns_match_within_folders_and_double_star_across(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_double_star_only_as_a_whole_part() -> None:
    assert pattern_problem("out/**/x") is None
    assert pattern_problem("a**") is not None and pattern_problem("../*") is not None


def test_cp_locations() -> None:
    assert parse_location("build-1:/var/log/app.log") == Remote("build-1", "/var/log/app.log")
    assert parse_location("web.example.com:rel/path") == Remote("web.example.com", "rel/path")
    for local in ("./tool.sh", "/tmp/a:b", "./a:b", "tool.sh", "build-1:"):
        assert parse_location(local) is None
