"""Run statuses and which of them are final."""

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"  # exit code 0
    FAILED = "failed"  # exit code > 0
    TERMINATED = "terminated"  # killed by a signal that was not ours
    STOPPED = "stopped"  # our SIGTERM ended it within the grace period
    KILLED = "killed"  # it needed our SIGKILL
    TIMED_OUT = "timed_out"  # its timeout_s ran out
    CANCELLED = "cancelled"  # stopped before it started
    LOST = "lost"  # its executor vanished


ACTIVE_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.STOPPING})
TERMINAL_STATUSES: frozenset[RunStatus] = frozenset(set(RunStatus) - ACTIVE_STATUSES)
