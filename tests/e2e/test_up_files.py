"""Files and artifacts through a secured `scriptbus up` (nkey users with least privilege, run-as user): a
file put is placed in a run's folder, the run's artifact comes back byte-exact, and the executor's NATS
user can read files but cannot write them."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import httpx
import nats
import nats.errors
import nats.js.errors
import nkeys
import pytest

from scriptbus.embedded import free_port
from scriptbus.events import Subjects
from scriptbus.events.nats_users import inbox_prefix
from tests.helpers.api import wait_for_status
from tests.helpers.processes import kill_processes_under
from tests.helpers.up import up

TOKEN = "e2e-" + uuid.uuid4().hex
s = Subjects("scriptbus")


async def test_files_and_artifacts_through_a_secured_up() -> None:
    base = Path(tempfile.mkdtemp(prefix="scriptbus-up-files-"))
    data_dir = base / "data"
    port = free_port()
    process = up(data_dir, port, base / "up.log", {"SCRIPTBUS_API_TOKENS": TOKEN})
    try:
        log = process.wait_for_log(r"scriptbus is up(?s:.*)Ctrl-C", timeout=120).group(0)
        nats_url = re.search(r"NATS\s+(nats://\S+)", log)
        assert nats_url, log
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
            payload = os.urandom(3 * 1024 * 1024 + 17)
            put = await client.put("/api/v1/files/bin/tool.sh", params={"executable": "true"}, content=payload)
            assert put.status_code == 200, put.text
            made = await client.post(
                "/api/v1/runs",
                json={
                    "script": "id -un; cp bin/tool.sh out.bin; ln -s /etc/shadow shadow.bin",
                    "files": ["bin/tool.sh"],
                    "artifacts": ["*.bin"],
                },
            )
            assert made.status_code == 202, made.text
            run = await wait_for_status(client, made.json()["id"], "succeeded", timeout=60)
            if os.geteuid() == 0:
                assert run["output"] == "scriptbus-run\n"  # placed files are readable by the script's user
            listed = (await client.get(f"/api/v1/runs/{run['id']}/artifacts")).json()["artifacts"]
            assert listed == [{"path": "out.bin", "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}]
            back = await client.get(f"/api/v1/runs/{run['id']}/artifacts/out.bin")
            assert back.status_code == 200 and back.content == payload

        seed = next((data_dir / "credentials").glob("nats-executor-*.nk"))
        public = nkeys.from_seed(bytearray(seed.read_bytes().strip())).public_key.decode()
        nc = await nats.connect(nats_url.group(1), nkeys_seed=str(seed), inbox_prefix=inbox_prefix(public))
        try:
            js = nc.jetstream(timeout=3)
            with pytest.raises((nats.errors.Error, nats.js.errors.Error)):
                await js.publish(f"$O.{s.files_bucket}.M.dG9vbC5zaA==", b"{}")
            # Artifacts are write-only for executors: no reading another run's back.
            with pytest.raises((nats.errors.Error, nats.js.errors.Error)):
                await js.get_last_msg(f"OBJ_{s.artifacts_bucket}", f"$O.{s.artifacts_bucket}.M.>")
        finally:
            await nc.close()
    finally:
        process.close(grace=60)
        kill_processes_under(data_dir / "runs")
        shutil.rmtree(base, ignore_errors=True)
