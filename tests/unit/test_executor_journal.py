"""The executor's journal: a live instance's is never taken for a predecessor's; a gone one's is."""

import json
import os
from pathlib import Path

import pytest

import scriptbus.executor.journal as journal_module
from scriptbus.executor.journal import JOURNAL_DIR, LOG_NAME, Entry, Journal, live_runs, predecessors, read_entries


def test_a_live_instance_is_not_a_predecessor(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "e1")
    journal.record(Entry("r1", "boot", 123, 456, "/sys/fs/cgroup/scriptbus/r1"))
    assert predecessors(tmp_path) == []
    assert live_runs(tmp_path) == {"r1"}
    journal.forget("r1")
    journal.close()
    assert not (tmp_path / JOURNAL_DIR / "e1").exists()  # every run was reported


def test_a_gone_instance_leaves_its_entries_to_the_next(tmp_path: Path) -> None:
    gone = tmp_path / JOURNAL_DIR / "e0"
    gone.mkdir(parents=True)
    (gone / "lock").touch()  # nobody holds it: the process died
    (gone / "r1.json").write_text(json.dumps({"run_id": "r1", "boot_id": "b", "pid": 7, "start_time": 9}))
    (gone / "r2.json").write_text('{"run_id": "r2", "bo')  # it died while writing
    [found] = predecessors(tmp_path)
    assert found.executor_id == "e0"
    assert found.entries == [Entry("r1", "b", 7, 9, None), Entry("r2")]
    # While we reap it, nobody else takes it.
    assert predecessors(tmp_path) == []
    found.done()
    assert not gone.exists()


def test_unreported_runs_stay_at_shutdown(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "e1")
    journal.record(Entry("r1", "boot"))
    journal.close()
    [found] = predecessors(tmp_path)
    assert [e.run_id for e in found.entries] == ["r1"]
    found.release()


def test_each_run_is_as_last_recorded_and_a_cut_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "e1")
    journal.record(Entry("r1", "boot"))  # claimed
    journal.record(Entry("r1", "boot", 123, 456, "/sys/fs/cgroup/scriptbus/r1"))  # spawned
    journal.record(Entry("r2", "boot"))
    journal.record(Entry("r2", "boot", 124, 457))
    journal.record(Entry("r3", "boot", 125, 458))
    journal.forget("r3")  # its finish was published
    # The process died while appending r2's third line.
    with (journal.dir / LOG_NAME).open("a") as f:
        f.write('{"run_id":"r2","boot_id":"boot","pid":1')
    os.close(journal._lock)  # as a SIGKILL would: the lock goes with the process
    [found] = predecessors(tmp_path)
    spawned = Entry("r1", "boot", 123, 456, "/sys/fs/cgroup/scriptbus/r1")
    assert found.entries == [spawned, Entry("r2", "boot", 124, 457)]
    assert live_runs(tmp_path) == {"r1", "r2"}
    found.release()


def test_a_long_journal_is_compacted_to_the_live_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "COMPACT_BYTES", 4096)
    journal = Journal(tmp_path, "e1")
    journal.record(Entry("long-running", "boot", 1, 2))
    for i in range(200):
        journal.record(Entry(f"r{i}", "boot"))
        journal.record(Entry(f"r{i}", "boot", 10 + i, 20 + i))
        journal.forget(f"r{i}")
    journal.record(Entry("last", "boot"))
    log_file = journal.dir / LOG_NAME
    assert log_file.stat().st_size < 4096 + 200
    live = {"long-running": Entry("long-running", "boot", 1, 2), "last": Entry("last", "boot")}
    assert read_entries(journal.dir) == live
    journal.forget("long-running")
    journal.forget("last")
    journal.close()
    assert not journal.dir.exists()
