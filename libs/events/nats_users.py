"""Who may do what on NATS: one user per service role, with the subjects each really needs.

Pure: from `Subjects` (the prefix) to each role's publish/subscribe allow and deny lists, and the
`authorization { users = [...] }` block of a nats-server config. Users are nkeys (the server holds only
public keys). Every user gets its own inbox prefix, `_INBOX.<public key>`, so no one can read the
replies (JetStream answers, pushed consumer messages) meant for another.

What the JetStream API subjects mean (nats-py 2.x against nats-server 2.10):
  `$JS.API.STREAM.INFO|CREATE|UPDATE|PURGE.<stream>`, `$JS.API.STREAM.MSG.GET.<stream>` (a message by
  sequence or last by subject, the subject in the body), `$JS.API.DIRECT.GET.<stream>[.<subject>]`,
  `$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>` (the filter in the subject, so a permission can pin
  it), `$JS.API.CONSUMER.INFO|DELETE|MSG.NEXT.<stream>.<name>`, acks on `$JS.ACK.<stream>.<consumer>.>`,
  flow control replies on `$JS.FC.<stream>.>`; a KV put/create/delete is a publish to `$KV.<bucket>.<key>`
  and a KV get is a direct get on the stream `KV_<bucket>`. An object store `<bucket>` is the stream
  `OBJ_<bucket>`: chunks published on `$O.<bucket>.C.<nuid>`, the object's info on `$O.<bucket>.M.<name>`
  (read as the last message on that subject); a get is a nameless ordered consumer on the chunks, a
  delete publishes the info and purges the chunks.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Sequence

from scriptbus.events.subjects import Subjects

API = "$JS.API"
INBOX = "_INBOX"
# The run events an executor publishes (`run.<name>` → `<prefix>.runs.<id>.<name>`): a run's start, its
# output, its process group and cgroup, its end. Never `requested` nor `stop_requested` nor `deleted`.
EXECUTOR_RUN_EVENTS = ("started", "out", "processes", "cgroup", "finished")


class Role(enum.StrEnum):
    GATEWAY = "gateway"
    RECORDER = "recorder"
    SCHEDULER = "scheduler"
    EXECUTOR = "executor"
    READER = "reader"


@dataclasses.dataclass(frozen=True, slots=True)
class Permissions:
    """Subjects a user may publish to and subscribe to; a deny wins over an allow."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()


def inbox_prefix(public_key: str) -> str:
    """The inbox prefix a user must connect with (nats-py `inbox_prefix`): only it may read below it."""
    return f"{INBOX}.{public_key}"


def _stream_admin(stream: str) -> list[str]:
    """Create a stream or bucket, give an older one new subjects or limits."""
    return [f"{API}.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "UPDATE")]


def _stream_read(stream: str) -> list[str]:
    return [f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.MSG.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}", f"{API}.DIRECT.GET.{stream}.>"]  # fmt: skip


def _consume(stream: str, consumers: str = "*", filters: Sequence[str] = (">",), delete: bool = True) -> list[str]:
    """Make, read and ack (and, with `delete`, delete) consumers named `consumers` on `stream`, each with
    one of `filters`."""
    made = [f"{API}.CONSUMER.CREATE.{stream}.{consumers}.{f}" for f in filters]
    if consumers == "*" and filters == (">",):
        # nats-py makes ordered consumers nameless, with the filter only in the request body.
        made += [f"{API}.CONSUMER.CREATE.{stream}", f"{API}.CONSUMER.CREATE.{stream}.*"]
    return [
        *made,
        f"{API}.CONSUMER.INFO.{stream}.{consumers}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{consumers}",
        *([f"{API}.CONSUMER.DELETE.{stream}.{consumers}"] if delete else []),
        f"$JS.ACK.{stream}.{consumers}.>",
        f"$JS.FC.{stream}.>",
    ]


def _kv_write(bucket: str) -> list[str]:
    return [f"$KV.{bucket}.>"]


def _common(public_key: str) -> tuple[list[str], list[str]]:
    """What every service needs: JetStream account info and stream lookup by subject, its own inbox."""
    return [f"{API}.INFO", f"{API}.STREAM.NAMES"], [f"{inbox_prefix(public_key)}.>"]


def _secrets_denied(s: Subjects) -> list[str]:
    """Reading the secrets bucket in any way: its stream's messages, a consumer on it, its live puts."""
    stream = f"KV_{s.secrets_bucket}"
    return [f"{API}.STREAM.MSG.GET.{stream}", f"{API}.DIRECT.GET.{stream}", f"{API}.DIRECT.GET.{stream}.>",
            f"{API}.CONSUMER.*.{stream}", f"{API}.CONSUMER.*.{stream}.>", f"{API}.CONSUMER.*.*.{stream}.>"]  # fmt: skip


def _object_stores(s: Subjects) -> tuple[str, str]:
    """The streams of the files and artifacts object stores."""
    return f"OBJ_{s.files_bucket}", f"OBJ_{s.artifacts_bucket}"


def _service_buckets(s: Subjects) -> list[str]:
    return [s.claims_bucket, s.command_names_bucket, s.idempotency_bucket, s.wfactive_bucket, s.wfdefs_bucket]


def service_permissions(s: Subjects, role: Role, public_key: str) -> Permissions:
    """The gateway, the recorder or the scheduler: each creates the streams and buckets at start (whoever
    is first), reads and consumes them, and publishes the events it is the author of. None subscribes to
    a subject outside its inbox: what they follow comes through JetStream consumers delivering there."""
    publish, subscribe = _common(public_key)
    p = s.prefix
    streams = [s.events_stream, s.executors_stream, *(f"KV_{b}" for b in _service_buckets(s))]
    for stream in streams:
        publish += [*_stream_admin(stream), *_stream_read(stream), *_consume(stream)]
    for bucket in _service_buckets(s):
        publish += _kv_write(bucket)
    if role is Role.GATEWAY:
        publish += [f"{p}.{kind}.>" for kind in ("runs", "commands", "workflows", "wfruns", "tokens", "secrets")]
        publish += [f"{p}.schedules.>"]  # admins define, change, pause and delete schedules
        publish += [f"{p}.executors.>"]  # admins manage executors
        publish += [f"{p}.fanouts.>"]  # fan-out requests, stops and retries
        # The gateway writes secrets (already encrypted for the executors) and never reads them back.
        publish += [*_stream_admin(f"KV_{s.secrets_bucket}"), *_kv_write(s.secrets_bucket)]
        # It makes both object stores, writes and serves files, serves artifacts and deletes them with
        # their run (an info marked deleted, chunks purged); it never writes an artifact's chunks.
        for stream in _object_stores(s):
            publish += [*_stream_admin(stream), *_stream_read(stream), *_consume(stream)]
            publish += [f"{API}.STREAM.PURGE.{stream}"]
        publish += [f"$O.{s.files_bucket}.>", f"$O.{s.artifacts_bucket}.M.>", f"{p}.files.>"]
    elif role is Role.RECORDER:
        # It publishes no event; it purges a deleted run's messages from the events stream.
        publish += [f"{API}.STREAM.PURGE.{s.events_stream}"]
    elif role is Role.SCHEDULER:
        # Workflow steps are run requests; a lost executor's runs end here; lost executors are marked.
        publish += [f"{p}.runs.>", f"{p}.wfruns.>", f"{p}.executors.>"]
        # Fan-outs: it records its decisions (hosts dispatched and skipped, the end) and requests the runs;
        # a workflow step with `fan_out` is a fan-out it requests (and stops) itself.
        publish += [f"{p}.fanouts.>"]
        # A schedule's ticks (`schedule.fired`): the runs and workflow runs they make are requested above.
        publish += [f"{p}.schedules.>"]
    else:
        raise ValueError(f"{role} is not a service role")
    return Permissions(
        publish=tuple(publish),
        subscribe=tuple(subscribe),
        publish_deny=tuple(_secrets_denied(s)),
        subscribe_deny=(f"$KV.{s.secrets_bucket}.>",),
    )


def executor_permissions(s: Subjects, public_key: str, host: str, pools: Iterable[str]) -> Permissions:
    """An executor on `host` serving `pools`: it pulls only its own queues, claims runs, reports on its
    runs and itself, and reads the secrets its runs name. It cannot request a run, write commands,
    workflows, tokens or secrets, nor create, change, purge or delete a stream."""
    publish, subscribe = _common(public_key)
    p = s.prefix
    events, executors = s.events_stream, s.executors_stream
    claims, secrets = f"KV_{s.claims_bucket}", f"KV_{s.secrets_bucket}"
    targets = list(dict.fromkeys([*pools, host]))
    publish += [f"{p}.runs.*.{name}" for name in EXECUTOR_RUN_EVENTS]
    publish += [f"{p}.executors.{host}.>"]
    # Its queues: made at start if missing (pinned to their filters), then pulled and acked; never deleted
    # (a pool's queue is shared: requests published while it was gone would be missed).
    for target in targets:
        publish += _consume(events, s.queue_consumer(target), [s.requests_for(target)], delete=False)
    # Ordered consumers that follow runs' ends and workflow steps' holds: nats-py makes them nameless with
    # the filter in the body, so this right reads the events stream (as does the last-message lookup of a
    # run's or workflow run's stop request below); writing is what is kept from executors.
    publish += [f"{API}.CONSUMER.CREATE.{events}", f"$JS.FC.{events}.>"]
    publish += _stream_read(events)
    publish += _stream_read(executors)  # its own host's last heartbeat, to refuse a duplicate
    publish += [*_stream_read(claims), *_kv_write(s.claims_bucket)]
    publish += _stream_read(secrets)
    # Files: read into run folders (an object's info, then an ordered consumer on its chunks). Artifacts:
    # written only, never read back (nor purged: its names are unique per run).
    files_stream, _ = _object_stores(s)
    publish += [*_stream_read(files_stream), f"{API}.CONSUMER.CREATE.{files_stream}", f"$JS.FC.{files_stream}.>"]
    publish += [f"$O.{s.artifacts_bucket}.>"]
    subscribe += [s.all_stop_requests, s.all_wfrun_stop_requests, s.executor_event(host, "heartbeat")]
    return Permissions(
        publish=tuple(publish),
        subscribe=tuple(subscribe),
        publish_deny=(
            f"{p}.runs.*.requested.>",
            *(
                f"{p}.{kind}.>"
                for kind in ("commands", "workflows", "wfruns", "tokens", "secrets", "files", "fanouts", "schedules")
            ),
            f"{API}.STREAM.CREATE.>",
            f"{API}.STREAM.UPDATE.>",
            f"{API}.STREAM.DELETE.>",
            f"{API}.STREAM.PURGE.>",
            f"{API}.STREAM.MSG.DELETE.>",
            f"{API}.CONSUMER.DELETE.>",
            f"$KV.{s.secrets_bucket}.>",
            f"$O.{s.files_bucket}.>",
        ),
        subscribe_deny=(f"$KV.{s.secrets_bucket}.>",),
    )


def reader_permissions(s: Subjects) -> Permissions:
    """For people and tools that watch (`nats sub`): live output and events, nothing else; no publish at
    all, so no JetStream API either. Token and secret events are left out (who changed what, not for all)."""
    p = s.prefix
    return Permissions(
        publish=(),
        subscribe=tuple(
            f"{p}.{kind}.>" for kind in ("runs", "commands", "workflows", "wfruns", "executors", "fanouts", "schedules")
        ),
        publish_deny=(">",),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class NatsUser:
    """One nkey user: its role, its public key and, for an executor, the host and pools it serves."""

    role: Role
    public_key: str
    host: str = ""
    pools: tuple[str, ...] = ()

    def permissions(self, s: Subjects) -> Permissions:
        if self.role is Role.EXECUTOR:
            return executor_permissions(s, self.public_key, self.host, self.pools)
        if self.role is Role.READER:
            return reader_permissions(s)
        return service_permissions(s, self.role, self.public_key)


def _block(allow: Sequence[str], deny: Sequence[str]) -> dict[str, list[str]]:
    block = {"allow": list(allow)} if allow else {}
    if deny:
        block["deny"] = list(deny)
    return block


def render_authorization(s: Subjects, users: Iterable[NatsUser]) -> str:
    """The `authorization { users = [...] }` block for a nats-server config file. Values are JSON strings,
    which nats-server's config parser reads as quoted strings (so `$JS...` is never a variable)."""
    lines = ["authorization {", "  users = ["]
    for user in users:
        perms = user.permissions(s)
        entry = {
            "nkey": user.public_key,
            "permissions": {
                "publish": _block(perms.publish, perms.publish_deny),
                "subscribe": _block(perms.subscribe, perms.subscribe_deny),
            },
        }
        note = f"{user.role}" + (f" on {user.host}, pools {','.join(user.pools)}" if user.role is Role.EXECUTOR else "")
        lines += [f"    # {note}", "    " + json.dumps(entry) + ","]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"
