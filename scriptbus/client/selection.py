"""The current project of `scriptbus wf` (seed 004's `select_project`), remembered between commands in
`$XDG_CONFIG_HOME/scriptbus/wf.json` (`~/.config/scriptbus/wf.json` by default). `-p` always wins."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path


def state_file(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or ""
    # The XDG spec: a relative value is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "scriptbus" / "wf.json"


def selected_project(environ: Mapping[str, str] | None = None) -> str | None:
    """The project last selected, or None when there is none (or the file is unreadable)."""
    try:
        data = json.loads(state_file(environ).read_text())
    except (OSError, ValueError):
        return None
    project = data.get("project") if isinstance(data, dict) else None
    return project if isinstance(project, str) and project else None


def select_project(project: str, environ: Mapping[str, str] | None = None) -> Path:
    """Remember `project` for later commands; returns where. Written whole and renamed into place, so two
    commands at once leave one of their choices, never a torn file."""
    path = state_file(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"project": project}) + "\n")
    os.replace(tmp, path)
    return path
