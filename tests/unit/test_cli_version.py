"""`scriptbus --version`: which scriptbus a host runs, without a server to ask."""

import subprocess
import sys
from importlib.metadata import version


def test_version_prints_the_installed_package_version() -> None:
    for flag in ("--version", "-V"):
        done = subprocess.run([sys.executable, "-m", "scriptbus", flag], capture_output=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"scriptbus {version('scriptbus')}\n".encode(), b"")
