"""What a previous executor instance on this host left behind: reaped before this one takes any work.

For each journal of an instance that is gone: its runs' processes still alive on this boot get TERM,
grace, KILL (the whole cgroup, or the tree below the recorded bash); each such run ends `lost` unless it
already has a finish; its folder goes. Then run folders no journal names are removed too."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from nats.js import JetStreamContext

from scriptbus.events import RunFinished, RunStatus, Subjects, publish_event, run_finish
from scriptbus.executor.containment import leftover, terminate
from scriptbus.executor.journal import Entry, Predecessor, live_runs
from scriptbus.executor.procfs import boot_id

log = logging.getLogger(__name__)


async def _kill(entry: Entry, grace_s: float) -> list[int]:
    procs = leftover(entry.cgroup, entry.pid, entry.start_time, [(m[0], m[1]) for m in entry.members])
    if procs is None:
        return []
    pids = procs.pids()
    if pids:
        log.warning("run %s: reaping %d process(es) a previous executor left: %s", entry.run_id, len(pids), pids)
    survivors = await terminate(procs, grace_s)
    await procs.close()
    return survivors


async def reap_leftovers(
    work_dir: Path,
    gone_instances: list[Predecessor],
    js: JetStreamContext,
    subjects: Subjects,
    host: str,
    grace_s: float,
) -> list[str]:
    """Reap the runs of the gone instances (from `predecessors()`, see the module doc); returns the run
    ids reported."""
    this_boot = boot_id()
    reported: list[str] = []
    for gone in gone_instances:
        for entry in gone.entries:
            survivors: list[int] = []
            if entry.boot_id == this_boot:
                survivors = await _kill(entry, grace_s)
                why = "reaped after the executor restarted"
            else:
                why = "the host rebooted while it ran"
            if await run_finish(js, subjects, entry.run_id) is None:
                await publish_event(
                    js,
                    subjects,
                    RunFinished(
                        run_id=entry.run_id,
                        status=RunStatus.LOST,
                        host=host,
                        survivors=survivors,
                        reason=f"executor {host} (instance {gone.executor_id[:8]}) died; {why}",
                    ),
                )
                reported.append(entry.run_id)
            shutil.rmtree(work_dir / entry.run_id, ignore_errors=True)
        gone.done()
    # Folders first, then the journals: a live instance journals a run before it makes its folder.
    folders = [p for p in work_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    journaled = live_runs(work_dir)
    for folder in folders:
        if folder.name not in journaled:
            log.info("removing stale run folder %s", folder)
            shutil.rmtree(folder, ignore_errors=True)
    if reported:
        log.warning("runs a previous executor left ended lost: %s", ", ".join(reported))
    return reported
