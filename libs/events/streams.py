"""Stream, consumer and bucket definitions, created idempotently by whichever service starts first."""

from __future__ import annotations

import dataclasses
import logging

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from scriptbus.events.subjects import Subjects

log = logging.getLogger(__name__)

# Output chunks are at most 64 KiB; the largest event is a run request with a 1 MiB script. The server's
# own max_payload (1 MiB unless configured; `scriptbus up` sets 8 MiB) caps messages below this too.
MAX_MSG_SIZE = 8 * 1024 * 1024
DUPLICATE_WINDOW_S = 120.0
CLAIM_MAX_AGE_S = 30 * 24 * 3600.0
IDEMPOTENCY_TTL_S = 24 * 3600.0
# A definition lock left by a gateway that died mid-change frees itself after this.
WFDEFS_LOCK_TTL_S = 60.0
# A request pulled but neither claimed nor released in this time goes to another executor.
QUEUE_ACK_WAIT_S = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class Retention:
    """How long and how much the events stream keeps. None leaves the stream's setting as it is (a new
    stream keeps everything); `max_age_s` 0 and `max_bytes` -1 mean unlimited."""

    max_age_s: float | None = None
    max_bytes: int | None = None


def events_stream_config(s: Subjects, retention: Retention = Retention()) -> StreamConfig:
    return StreamConfig(
        name=s.events_stream,
        subjects=s.events_subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_msg_size=MAX_MSG_SIZE,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
        max_age=retention.max_age_s or 0,
        max_bytes=retention.max_bytes if retention.max_bytes is not None else -1,
    )


def executors_stream_config(s: Subjects) -> StreamConfig:
    # Only the latest message per executor subject matters: the stream is the fleet's current state.
    return StreamConfig(
        name=s.executors_stream,
        subjects=s.executors_subjects,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=1,
        allow_direct=True,
    )


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or give one made by an older release the subjects it lacks."""
    assert config.name is not None
    try:
        existing = (await js.stream_info(config.name)).config
    except nats.js.errors.NotFoundError:
        pass
    else:
        missing = [s for s in config.subjects or [] if s not in (existing.subjects or [])]
        if missing:
            await js.update_stream(dataclasses.replace(existing, subjects=[*(existing.subjects or []), *missing]))
        return
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        # Another service created it between our look and our add.
        await js.stream_info(config.name)


async def _apply_retention(js: JetStreamContext, name: str, retention: Retention) -> None:
    """Give the existing stream `name` the limits `retention` sets, if it has others."""
    config = (await js.stream_info(name)).config
    max_age = float(config.max_age or 0) if retention.max_age_s is None else retention.max_age_s
    max_bytes = (config.max_bytes or -1) if retention.max_bytes is None else retention.max_bytes
    if (max_age, max_bytes) != (float(config.max_age or 0), config.max_bytes or -1):
        log.info("stream %s: setting max_age %gs, max_bytes %d (0 / -1: unlimited)", name, max_age, max_bytes)
        await js.update_stream(dataclasses.replace(config, max_age=max_age, max_bytes=max_bytes))


async def ensure_streams(js: JetStreamContext, s: Subjects, retention: Retention = Retention()) -> None:
    """Create the streams and buckets of this installation if they do not exist yet, and give the events
    stream the limits `retention` sets (a stream made earlier with other limits is updated)."""
    await _ensure_stream(js, events_stream_config(s, retention))
    await _apply_retention(js, s.events_stream, retention)
    await _ensure_stream(js, executors_stream_config(s))
    await claims_bucket(js, s)
    await command_names_bucket(js, s)
    await idempotency_bucket(js, s)
    await wfactive_bucket(js, s)


async def _bucket(js: JetStreamContext, name: str, ttl: float | None) -> KeyValue:
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(KeyValueConfig(bucket=name, history=1, ttl=ttl, storage=StorageType.FILE))
    except nats.js.errors.BadRequestError:
        return await js.key_value(name)


async def claims_bucket(js: JetStreamContext, s: Subjects) -> KeyValue:
    """Run id -> who holds it. `create` on this bucket is the one atomic claim on a run: an executor's
    claim means it starts the run, a stop's claim means no executor ever will."""
    return await _bucket(js, s.claims_bucket, CLAIM_MAX_AGE_S)


async def command_names_bucket(js: JetStreamContext, s: Subjects) -> KeyValue:
    """Command name -> command id. Whoever wins `create` of a name owns it; delete frees it."""
    return await _bucket(js, s.command_names_bucket, None)


async def idempotency_bucket(js: JetStreamContext, s: Subjects) -> KeyValue:
    """sha256(Idempotency-Key) -> {"request": sha256 of method+path+body, "resource": ...}; 24 h."""
    return await _bucket(js, s.idempotency_bucket, IDEMPOTENCY_TTL_S)


async def wfactive_bucket(js: JetStreamContext, subjects: Subjects) -> KeyValue:
    """Workflow id -> the set of its active workflow runs (`active_runs.py`), changed only by
    compare-and-set on the key's revision; a place whose run has finished is taken over."""
    return await _bucket(js, subjects.wfactive_bucket, None)


async def wfdefs_bucket(js: JetStreamContext, s: Subjects) -> KeyValue:
    """Project name -> who is changing its definitions: one change at a time, so none is lost."""
    return await _bucket(js, s.wfdefs_bucket, WFDEFS_LOCK_TTL_S)


def queue_consumer_config(s: Subjects, target: str) -> ConsumerConfig:
    # `new`: the queue holds requests from its creation on; whoever publishes to a target first
    # makes sure the queue exists, so no request is missed and old history is never replayed.
    # Named as well as durable: nats-py then puts the filter in the API subject, where NATS permissions pin
    # an executor's queues to their own requests (`nats_users.py`).
    return ConsumerConfig(
        name=s.queue_consumer(target),
        durable_name=s.queue_consumer(target),
        filter_subject=s.requests_for(target),
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=QUEUE_ACK_WAIT_S,
        max_ack_pending=100_000,
        max_deliver=-1,
    )


async def ensure_queue(js: JetStreamContext, s: Subjects, target: str) -> None:
    """Make sure the durable queue of requests for a pool or host exists."""
    name = s.queue_consumer(target)
    try:
        await js.consumer_info(s.events_stream, name)
        return
    except nats.js.errors.NotFoundError:
        pass
    try:
        await js.add_consumer(s.events_stream, queue_consumer_config(s, target))
    except nats.js.errors.BadRequestError:
        await js.consumer_info(s.events_stream, name)
