"""The executor's work dir and who may see into it: scripts may enter it to reach their own run folder
(mode 0700, theirs), but list neither it nor the journal."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from scriptbus.executor.journal import JOURNAL_DIR

log = logging.getLogger(__name__)

WORK_DIR_MODE = 0o711
JOURNAL_MODE = 0o700


def prepare(work_dir: Path, scripts_run_as_another_user: bool) -> None:
    """Make `work_dir` (enter, not list) and its journal folder (the executor's alone). When scripts run as
    another user, every folder above `work_dir` gets o+x if it lacks it (nothing becomes readable), so a
    script can reach its HOME by its path."""
    work_dir.mkdir(parents=True, exist_ok=True)
    journal = work_dir / JOURNAL_DIR
    journal.mkdir(mode=JOURNAL_MODE, exist_ok=True)
    for path, mode in ((work_dir, WORK_DIR_MODE), (journal, JOURNAL_MODE)):
        try:
            path.chmod(mode)
        except PermissionError as exc:
            log.warning("cannot make %s mode %o (%s): scripts may be able to list it", path, mode, exc)
    if scripts_run_as_another_user:
        for parent in work_dir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
                log.info("%s: o+x added, so scripts can reach their run folders below it", parent)
