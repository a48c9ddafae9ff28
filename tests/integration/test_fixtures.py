"""The fixtures themselves: each test gets real, isolated servers."""

import os

import asyncpg

from scriptbus.events import RunRequested, new_id, publish_event
from tests.helpers.servers import Bus, Servers, docker_answers


async def test_database_is_fresh_and_writable(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
        await conn.execute("CREATE TABLE t (x int)")
    finally:
        await conn.close()


async def test_bus_streams_are_per_prefix(bus: Bus) -> None:
    nc, js, subjects = bus
    ack = await publish_event(js, subjects, RunRequested(run_id=new_id(), script="true"))
    assert ack.stream == subjects.events_stream
    assert ack.seq == 1


def test_servers_come_from_a_docker_engine_when_one_answers(servers: Servers) -> None:
    # DESIGN.md's order; with an engine answering, the suite must run on containers, not fall over.
    if os.environ.get("SCRIPTBUS_TEST_NATS_URL") and os.environ.get("SCRIPTBUS_TEST_DATABASE_URL"):
        expected = "environment"
    elif docker_answers():
        expected = "testcontainers"
    else:
        expected = "embedded"
    assert servers.source == expected
