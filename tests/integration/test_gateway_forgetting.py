"""Deleting forgets and the stream has limits: a deleted run's script, env and output leave the events
stream once the deletion is projected (only its `run.deleted` tombstone stays), its events and output
answer 404, and the events stream's retention comes from the settings."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import nats.js.errors

from scriptbus.events import Subjects, ensure_streams
from scriptbus.events.streams import Retention
from tests.helpers.api import wait_for_status
from tests.helpers.gateway import Api, create
from tests.helpers.processes import ServiceProcess
from tests.helpers.servers import Bus
from tests.helpers.waiting import eventually

GIB = 1024**3


async def run_messages(api: Api, run_id: str) -> dict[str, int]:
    """Messages the events stream holds for one run, by subject."""
    info = await api.js.stream_info(api.subjects.events_stream, subjects_filter=api.subjects.run_all(run_id))
    return dict(info.state.subjects or {})


async def only(api: Api, run_id: str, subject: str) -> bool:
    return await run_messages(api, run_id) == {subject: 1}


async def stored_bytes(api: Api, run_id: str) -> bytes:
    """Everything the stream holds for one run, payloads and headers together."""
    found = b""
    seq = 1
    while True:
        try:
            msg = await api.js.get_msg(
                api.subjects.events_stream, seq=seq, subject=api.subjects.run_all(run_id), next=True
            )
        except nats.js.errors.NotFoundError:
            return found
        found += (msg.data or b"") + repr(msg.headers).encode()
        seq = (msg.seq or 0) + 1


async def test_a_deleted_run_leaves_the_stream_and_its_events_and_output_are_404(
    api: Api, start_service: Callable[..., ServiceProcess]
) -> None:
    start_service("executor", "--host", "forget-host")
    run = await create(api, script='echo "output-$TOKEN"', env={"TOKEN": "s3cret"}, description="to forget")
    await wait_for_status(api.client, run["id"], "succeeded")
    kept = await create(api, script="echo kept", pool="nobody")
    assert (await api.client.get(f"/api/v1/runs/{run['id']}/output")).content == b"output-s3cret\n"
    assert b"s3cret" in await stored_bytes(api, run["id"])
    assert len(await run_messages(api, run["id"])) >= 4  # requested, started, out, finished

    assert (await api.client.delete(f"/api/v1/runs/{run['id']}")).status_code == 204
    for path in ("", "/output", "/events"):
        gone = await api.client.get(f"/api/v1/runs/{run['id']}{path}")
        assert gone.status_code == 404, (path, gone.text)
        assert gone.json() == {"detail": f"run {run['id']} not found"}

    # Once projected, the deletion is all the stream keeps of the run: no script, env or output.
    deleted = api.subjects.run_event(run["id"], "deleted")
    await eventually(lambda: only(api, run["id"], deleted), what="the deleted run's messages purged")
    assert b"s3cret" not in await stored_bytes(api, run["id"])
    assert (await api.client.get(f"/api/v1/runs/{run['id']}/events")).status_code == 404
    # Other runs keep everything.
    assert len(await run_messages(api, kept["id"])) == 1
    assert (await api.client.get(f"/api/v1/runs/{kept['id']}")).status_code == 200


async def test_retention_of_the_events_stream_comes_from_the_settings(
    api: Api, bus: Bus, start_service: Callable[..., ServiceProcess]
) -> None:
    _nc, js, subjects = bus
    info = await js.stream_info(subjects.events_stream)
    assert (info.config.max_age or 0) == 0 and info.config.max_bytes == -1, "unlimited unless set"

    # A service started with the settings applies them to the existing stream.
    start_service("recorder", env={"SCRIPTBUS_EVENTS_MAX_AGE_S": "86400", "SCRIPTBUS_EVENTS_MAX_BYTES": str(GIB)})

    async def limited() -> bool:
        config = (await js.stream_info(subjects.events_stream)).config
        return config.max_age == 86400 and config.max_bytes == GIB

    await eventually(limited, what="the stream's limits set from SCRIPTBUS_EVENTS_MAX_*")
    # A service without them (an executor on another host, say) leaves the limits alone.
    await ensure_streams(js, subjects)
    assert await limited()
    # 0 seconds and -1 bytes set them back to unlimited.
    await ensure_streams(js, subjects, Retention(max_age_s=0, max_bytes=-1))
    config = (await js.stream_info(subjects.events_stream)).config
    assert (config.max_age or 0) == 0 and config.max_bytes == -1

    # A stream made with limits has them from the start.
    fresh = Subjects("t" + uuid.uuid4().hex[:10])
    try:
        await ensure_streams(js, fresh, Retention(max_age_s=3600, max_bytes=2 * GIB))
        config = (await js.stream_info(fresh.events_stream)).config
        assert config.max_age == 3600 and config.max_bytes == 2 * GIB
    finally:
        for stream in (fresh.events_stream, fresh.executors_stream):
            await js.delete_stream(stream)
        for bucket in (fresh.claims_bucket, fresh.command_names_bucket, fresh.idempotency_bucket):
            await js.delete_stream(f"KV_{bucket}")
