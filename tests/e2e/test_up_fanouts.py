"""A fan-out through a secured `scriptbus up` (nkey users with least-privilege permissions, API tokens):
the gateway may publish the request, the scheduler its decisions and the runs, the reader may watch."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import nats
import nkeys
from nats.aio.msg import Msg

from scriptbus.embedded import free_port
from scriptbus.events.nats_users import inbox_prefix
from tests.helpers.fanouts import by_host, cli, wait_fanout_finished
from tests.helpers.processes import kill_processes_under
from tests.helpers.tokens import bearer
from tests.helpers.up import up
from tests.helpers.waiting import eventually

TOKEN = "e2e-" + uuid.uuid4().hex


async def test_run_all_and_a_fanout_work_under_secured_up_and_a_reader_sees_its_events(
    tmp_path: Path, up_data_dir: Path
) -> None:
    port = free_port()
    stack = up(up_data_dir, port, tmp_path / "up.log", {"SCRIPTBUS_API_TOKENS": TOKEN})
    api = f"http://127.0.0.1:{port}"
    try:
        log = stack.wait_for_log(r"scriptbus is up(?s:.*)Ctrl-C", timeout=120).group(0)
        nats_url = re.search(r"NATS\s+(nats://\S+)", log)
        assert nats_url, log
        seed = up_data_dir / "credentials" / "nats-reader.nk"
        public = nkeys.from_seed(bytearray(seed.read_bytes().strip())).public_key.decode()
        reader = await nats.connect(nats_url.group(1), nkeys_seed=str(seed), inbox_prefix=inbox_prefix(public))
        seen: list[str] = []

        async def on_msg(msg: Msg) -> None:
            seen.append(msg.subject)

        await reader.subscribe("scriptbus.fanouts.>", cb=on_msg)
        async with httpx.AsyncClient(base_url=api, timeout=30, headers=bearer(TOKEN)) as client:
            # The executor comes up a moment after the API does.
            async def one_online() -> bool:
                items = (await client.get("/api/v1/executors")).json()["items"]
                return any(e["state"] == "online" for e in items)

            await eventually(one_online, 60, interval=0.1, what="the executor online")
            started = await client.post("/api/v1/fanouts", json={"script": "echo fanned out", "max_parallel": 1})
            assert started.status_code == 202, started.text
            fanout = started.json()
            end = await wait_fanout_finished(client, fanout["id"])
            assert end["status"] == "succeeded", end
            (host,) = end["hosts"]
            run = (await client.get(f"/api/v1/runs/{by_host(end)[host]['run_id']}")).json()
            assert run["output"] == "fanned out\n" and run["requested_by"] != ""

        code, out, err = await cli(api, "--token", TOKEN, "run", "--all", "echo hi")
        assert code == 0, (out, err)
        assert f"{host} | hi" in out.splitlines()
        await reader.flush()
        assert f"scriptbus.fanouts.{fanout['id']}.requested" in seen
        assert f"scriptbus.fanouts.{fanout['id']}.finished" in seen
        await reader.close()
    finally:
        stack.close(grace=60)
        kill_processes_under(up_data_dir / "runs")
