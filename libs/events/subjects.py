"""Every subject, stream, consumer and bucket name, built in one place.

Subjects go from general to specific with ids last but one: `<prefix>.runs.<run_id>.started`.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def valid_token(value: str) -> bool:
    """True when `value` can stand as one subject token (pool names, host names, prefixes)."""
    return bool(_TOKEN.match(value))


def host_token(hostname: str) -> str:
    """A host name made safe for a subject token: dots and anything unusual become '-'."""
    token = re.sub(r"[^A-Za-z0-9_-]", "-", hostname)[:128]
    return token or "host"


class Subjects:
    """Names for one installation, told apart by its prefix (default `scriptbus`)."""

    def __init__(self, prefix: str = "scriptbus") -> None:
        if not valid_token(prefix):
            raise ValueError(f"prefix {prefix!r} must match [A-Za-z0-9_-]{{1,128}}")
        self.prefix = prefix
        up = prefix.upper().replace("-", "_")
        # Streams and buckets
        self.events_stream = f"{up}_EVENTS"
        self.executors_stream = f"{up}_EXECUTORS"
        self.claims_bucket = f"{up}_claims"
        # Command name -> command id; `create` makes names unique without a database round trip.
        self.command_names_bucket = f"{up}_command_names"
        # Idempotency-Key (hashed) -> the request's hash and the resource it made; entries live 24 h.
        self.idempotency_bucket = f"{up}_idempotency"
        # Workflow id -> its active workflow run's id; `create` is the one atomic "start".
        self.wfactive_bucket = f"{up}_wfactive"
        # Project name -> the gateway request changing its definitions now (a short-lived lock).
        self.wfdefs_bucket = f"{up}_wfdefs"
        # Secret name -> its value, encrypted; only executors may read it (the gateway only writes).
        self.secrets_bucket = f"{up}_secrets"
        # Object stores: files users put (executors read them into run folders) and what runs leave behind
        # (executors write them; the gateway serves them).
        self.files_bucket = f"{up}_files"
        self.artifacts_bucket = f"{up}_artifacts"
        # Subjects held by the events stream
        self.events_subjects = [
            f"{prefix}.runs.>",
            f"{prefix}.commands.>",
            f"{prefix}.workflows.>",
            f"{prefix}.wfruns.>",
            f"{prefix}.tokens.>",
            f"{prefix}.secrets.>",
            f"{prefix}.fanouts.>",
            f"{prefix}.schedules.>",
            f"{prefix}.files.>",
        ]
        self.executors_subjects = [f"{prefix}.executors.>"]
        self.all_output = f"{prefix}.runs.*.out"
        self.all_stop_requests = f"{prefix}.runs.*.stop_requested"
        self.all_wfrun_stop_requests = f"{prefix}.wfruns.*.stop_requested"
        self.all_step_holds = f"{prefix}.wfruns.*.step_held"
        self.all_step_releases = f"{prefix}.wfruns.*.step_released"
        self.all_run_finishes = f"{prefix}.runs.*.finished"
        self.all_heartbeats = f"{prefix}.executors.*.heartbeat"

    # runs ---------------------------------------------------------------------------------------
    def run_requested(self, run_id: str, target: str) -> str:
        return f"{self.prefix}.runs.{run_id}.requested.{target}"

    def requests_for(self, target: str) -> str:
        """Filter subject of the queue an executor serving `target` (a pool or its host) pulls."""
        return f"{self.prefix}.runs.*.requested.{target}"

    def run_event(self, run_id: str, name: str) -> str:
        """`started`, `stop_requested`, `finished`, `deleted`."""
        return f"{self.prefix}.runs.{run_id}.{name}"

    def run_output(self, run_id: str) -> str:
        return f"{self.prefix}.runs.{run_id}.out"

    def run_all(self, run_id: str) -> str:
        return f"{self.prefix}.runs.{run_id}.>"

    # commands -----------------------------------------------------------------------------------
    def command_event(self, command_id: str, name: str) -> str:
        """`created`, `updated`, `deleted`."""
        return f"{self.prefix}.commands.{command_id}.{name}"

    # workflows ----------------------------------------------------------------------------------
    def workflow_event(self, workflow_id: str, name: str) -> str:
        """`defined`, `removed`. Projects live here too (`project_defined`, `project_removed`): the
        events stream's subjects are fixed when it is created."""
        return f"{self.prefix}.workflows.{workflow_id}.{name}"

    def wfrun_event(self, wfrun_id: str, name: str) -> str:
        """`requested`, `step_dispatched`, `step_settled`, `stop_requested`, `finished`, …"""
        return f"{self.prefix}.wfruns.{wfrun_id}.{name}"

    def wfrun_all(self, wfrun_id: str) -> str:
        return f"{self.prefix}.wfruns.{wfrun_id}.>"

    def all_wfruns(self) -> str:
        return f"{self.prefix}.wfruns.>"

    # tokens and secrets -------------------------------------------------------------------------
    def token_event(self, token_id: str, name: str) -> str:
        """`created`, `revoked`. The token itself never appears: only its digest, role and name."""
        return f"{self.prefix}.tokens.{token_id}.{name}"

    def secret_event(self, secret_name: str, name: str) -> str:
        """`set`, `removed`. Names and who changed them only: values live encrypted in the secrets bucket."""
        return f"{self.prefix}.secrets.{secret_name}.{name}"

    # fan-outs and schedules ---------------------------------------------------------------------
    def fanout_event(self, fanout_id: str, name: str) -> str:
        """`requested`, `stop_requested`, `retry_requested`, `finished`, …"""
        return f"{self.prefix}.fanouts.{fanout_id}.{name}"

    def schedule_event(self, schedule_id: str, name: str) -> str:
        """`created`, `updated`, `deleted`, `paused`, `resumed`, `fired`, …"""
        return f"{self.prefix}.schedules.{schedule_id}.{name}"

    # files ----------------------------------------------------------------------------------------
    def file_event(self, name_key: str, name: str) -> str:
        """`stored`, `deleted`: who changed which file (the audit log); the bytes are in the object store.
        A file's name may hold '.' and '/', so its key here is a digest of it (`files.file_key`)."""
        return f"{self.prefix}.files.{name_key}.{name}"

    # executors ----------------------------------------------------------------------------------
    def executor_event(self, host: str, name: str) -> str:
        """`heartbeat`, `stopped`, `lost`."""
        return f"{self.prefix}.executors.{host}.{name}"

    # consumers ----------------------------------------------------------------------------------
    @staticmethod
    def queue_consumer(target: str) -> str:
        """Durable consumer shared by every executor serving `target`: each request goes to one of them."""
        return f"queue_{target}"
