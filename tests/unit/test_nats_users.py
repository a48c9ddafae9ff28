"""Each NATS role's permissions, as data: what an executor and a reader may never do."""

from __future__ import annotations

import json

from scriptbus.events import Subjects
from scriptbus.events.nats_users import NatsUser, Role, executor_permissions, reader_permissions, render_authorization

s = Subjects("sb")
KEY = "UEXAMPLEPUBLICKEY"


def test_an_executor_serves_only_its_own_queues_and_may_not_request_runs_or_change_streams() -> None:
    perms = executor_permissions(s, KEY, "h1", ["gpu"])
    creates = [p for p in perms.publish if ".CONSUMER.CREATE.SB_EVENTS.queue_" in p]
    assert creates == [
        "$JS.API.CONSUMER.CREATE.SB_EVENTS.queue_gpu.sb.runs.*.requested.gpu",
        "$JS.API.CONSUMER.CREATE.SB_EVENTS.queue_h1.sb.runs.*.requested.h1",
    ]
    assert "sb.runs.*.requested.>" in perms.publish_deny
    assert not [p for p in perms.publish if "requested" in p and "CONSUMER" not in p]
    denied = ["sb.commands.>", "sb.workflows.>", "sb.wfruns.>", "sb.tokens.>", "sb.secrets.>", "$KV.SB_secrets.>"]
    denied += [f"$JS.API.STREAM.{verb}.>" for verb in ("CREATE", "UPDATE", "PURGE", "DELETE")]
    assert set(denied) <= set(perms.publish_deny)
    assert "sb.executors.h1.>" in perms.publish and "sb.executors.>" not in perms.publish
    assert f"_INBOX.{KEY}.>" in perms.subscribe and "_INBOX.>" not in perms.subscribe


def test_the_reader_only_subscribes() -> None:
    perms = reader_permissions(s)
    assert perms.publish == () and perms.publish_deny == (">",)
    assert "sb.runs.>" in perms.subscribe
    assert not [p for p in perms.subscribe if "tokens" in p or "secrets" in p or "INBOX" in p or "$" in p]


def test_only_executors_may_read_the_secrets_bucket() -> None:
    users = [NatsUser(role, KEY, "h1", ("p",)) for role in Role]
    for user in users:
        perms = user.permissions(s)
        reads = [p for p in perms.publish if "KV_SB_secrets" in p and (".GET." in p or ".CONSUMER." in p)]
        assert bool(reads) == (user.role is Role.EXECUTOR), user.role
        writes = [p for p in perms.publish if p.startswith("$KV.SB_secrets")]
        assert bool(writes) == (user.role is Role.GATEWAY), user.role


def test_the_authorization_block_lists_every_user_by_public_key_only() -> None:
    text = render_authorization(s, [NatsUser(Role.GATEWAY, "UGATEWAY"), NatsUser(Role.READER, "UREADER")])
    entries = [json.loads(line.strip().rstrip(",")) for line in text.splitlines() if line.strip().startswith("{")]
    assert [e["nkey"] for e in entries] == ["UGATEWAY", "UREADER"]
    assert entries[1]["permissions"]["publish"] == {"deny": [">"]}


def test_executors_read_files_and_only_write_artifacts_the_gateway_writes_files_and_reads_artifacts() -> None:
    executor = executor_permissions(s, KEY, "h1", ["gpu"])
    assert "$JS.API.STREAM.MSG.GET.OBJ_SB_files" in executor.publish
    assert "$JS.API.CONSUMER.CREATE.OBJ_SB_files" in executor.publish
    assert "$O.SB_artifacts.>" in executor.publish
    assert "$O.SB_files.>" in executor.publish_deny and "$O.SB_files.>" not in executor.publish
    assert not [p for p in executor.publish if "OBJ_SB_artifacts" in p]  # never reads artifacts back
    gateway = NatsUser(Role.GATEWAY, KEY).permissions(s)
    assert {"$O.SB_files.>", "$JS.API.STREAM.CREATE.OBJ_SB_files", "$JS.API.STREAM.PURGE.OBJ_SB_files"} <= set(
        gateway.publish
    )
    assert {"$JS.API.STREAM.MSG.GET.OBJ_SB_artifacts", "$O.SB_artifacts.M.>"} <= set(gateway.publish)
    assert "$O.SB_artifacts.>" not in gateway.publish  # it deletes artifacts, never writes their bytes
    assert "sb.files.>" in gateway.publish and "sb.files.>" in executor.publish_deny  # the audit events
    for role in (Role.RECORDER, Role.SCHEDULER):
        assert not [p for p in NatsUser(role, KEY).permissions(s).publish if "$O." in p or "OBJ_" in p]


def test_fanout_events_come_from_the_gateway_and_the_scheduler_only_and_readers_may_watch_them() -> None:
    users = {role: NatsUser(role, KEY, "h1", ("p",)).permissions(s) for role in Role}
    for role, perms in users.items():
        may_publish = "sb.fanouts.>" in perms.publish
        assert may_publish == (role in (Role.GATEWAY, Role.SCHEDULER)), role
    assert "sb.fanouts.>" in users[Role.EXECUTOR].publish_deny
    assert "sb.fanouts.>" in users[Role.READER].subscribe
    # The scheduler requests each host's run of a fan-out, and a `fan_out` step's fan-out (and its stop).
    assert "sb.runs.>" in users[Role.SCHEDULER].publish


def test_schedule_events_are_written_by_the_gateway_and_the_scheduler_only_and_the_reader_may_watch() -> None:
    for role in Role:
        perms = NatsUser(role, KEY, "h1", ("p",)).permissions(s)
        writes = "sb.schedules.>" in perms.publish
        assert writes == (role in (Role.GATEWAY, Role.SCHEDULER)), role
    # The scheduler requests the runs and workflow runs its ticks make.
    scheduler = NatsUser(Role.SCHEDULER, KEY).permissions(s)
    assert {"sb.runs.>", "sb.wfruns.>"} <= set(scheduler.publish)
    assert "sb.schedules.>" in executor_permissions(s, KEY, "h1", ["p"]).publish_deny
    assert "sb.schedules.>" in reader_permissions(s).subscribe
