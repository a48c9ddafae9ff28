"""A small journal of what this executor instance started, so the next instance on this host can reap
what it left behind (after a SIGKILL, a crash or a power cut).

`<work_dir>/.journal/<executor_id>/` holds a `lock` file that the instance keeps flock'ed while it lives,
and `runs.jsonl`: one line per record, the run's whole entry as it is then (from its claim), or
`{"run_id": ..., "done": true}` once its finish is published. A run's last line says where it is; a
line cut short by a crash is skipped. A directory whose lock can be taken belongs to an instance that
is gone.

One file appended to through a descriptor kept open: a record is one write(). A file per run cost a
create and an unlink per run, and renaming a rewritten entry into place ~0.95 ms of CPU per record
(ext4, here). Once the file passes `COMPACT_BYTES` it is rewritten with the live runs' entries alone.
Executors before 2026-12 kept `<run_id>.json` per run: those are read too."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JOURNAL_DIR = ".journal"
LOG_NAME = "runs.jsonl"
COMPACT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Entry:
    run_id: str
    boot_id: str = ""
    # Unset between the claim and the spawn.
    pid: int | None = None
    start_time: int | None = None
    cgroup: str | None = None
    # Without a cgroup: [pid, start time] of each process seen as the run's.
    members: list[list[int]] = field(default_factory=list)


def read_entries(directory: Path) -> dict[str, Entry]:
    """The runs a journal directory names, by run id, each as last recorded."""
    entries = {path.stem: _legacy_entry(path) for path in sorted(directory.glob("*.json"))}
    try:
        lines = (directory / LOG_NAME).read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        log.warning("journal %s unreadable (%s)", directory, exc)
        lines = []
    for line in lines:
        try:
            raw = json.loads(line)
            if raw.pop("done", False):
                entries.pop(raw["run_id"], None)
            else:
                entries[raw["run_id"]] = Entry(**raw)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # cut short by a crash: the line before it stands
    return entries


def _legacy_entry(path: Path) -> Entry:
    try:
        return Entry(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        # A half-written entry (it died while writing it): its run id is still in the name.
        log.warning("journal entry %s unreadable (%s)", path, exc)
        return Entry(run_id=path.stem)


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class Journal:
    """This instance's journal, locked for as long as the process lives. Records come from the event loop
    and from worker threads."""

    def __init__(self, work_dir: Path, executor_id: str) -> None:
        self.dir = work_dir / JOURNAL_DIR / executor_id
        # Made under a hidden name and locked before it appears, so no other instance ever finds it
        # unlocked and takes it for a predecessor's.
        making = self.dir.with_name(f".{executor_id}")
        making.mkdir(parents=True)
        self._lock = os.open(making / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = self._open(making / LOG_NAME)
        making.rename(self.dir)
        self._live: dict[str, Entry] = {}
        self._size = 0
        # A compaction swaps the file: no append may go to the one it replaces.
        self._writing = threading.Lock()

    @staticmethod
    def _open(path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def record(self, entry: Entry) -> None:
        """Record a run's entry as it is now, before the run is announced.

        Not fsync'ed: the entry must outlive the executor (a SIGKILL or a crash leaves it in the page
        cache for the next instance), not the machine. A power cut kills the run's processes with it,
        and the scheduler reports the runs of the silent instance `lost` without any journal."""
        with self._writing:
            self._live[entry.run_id] = entry
            self._append(asdict(entry))

    def forget(self, run_id: str) -> None:
        """The run's finish is published: nothing of it is left to reap."""
        with self._writing:
            if self._live.pop(run_id, None) is None:
                return
            self._append({"run_id": run_id, "done": True})
            if self._size > COMPACT_BYTES:
                self._compact()

    def _append(self, record: dict[str, Any]) -> None:
        line = _line(record)
        os.write(self._fd, line)
        self._size += len(line)

    def _compact(self) -> None:
        """The live runs' entries alone, renamed over the log: whole or not at all."""
        tmp = self.dir / f"{LOG_NAME}.tmp"
        data = b"".join(_line(asdict(e)) for e in self._live.values())
        tmp.write_bytes(data)
        fd = self._open(tmp)
        os.replace(tmp, self.dir / LOG_NAME)
        os.close(self._fd)
        self._fd, self._size = fd, len(data)

    def close(self) -> None:
        """At shutdown: with every run reported the journal goes; entries of runs whose finish could not
        be published stay, for the next instance to report."""
        os.close(self._fd)
        if not self._live:
            shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock)


@dataclass
class Predecessor:
    """A journal whose instance is gone, held locked by us while we reap it."""

    executor_id: str
    dir: Path
    entries: list[Entry]
    _lock: int

    def done(self) -> None:
        """Reaped and reported: the journal goes."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()

    def release(self) -> None:
        os.close(self._lock)


def live_runs(work_dir: Path) -> set[str]:
    """Run ids in every journal (live or not) under `work_dir`."""
    root = work_dir / JOURNAL_DIR
    if not root.is_dir():
        return set()
    return {run_id for directory in root.iterdir() if directory.is_dir() for run_id in read_entries(directory)}


def predecessors(work_dir: Path) -> list[Predecessor]:
    """Journals left by instances that are gone; each is locked by us until `done()`."""
    out: list[Predecessor] = []
    root = work_dir / JOURNAL_DIR
    if not root.is_dir():
        return out
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a live instance
            continue
        out.append(Predecessor(directory.name, directory, list(read_entries(directory).values()), fd))
    return out
