"""The console's admin work in a real headless Chromium against the real stack: a file uploaded, listed
with its sha256, downloaded byte for byte and deleted; a secret set whose value never shows again; a
token made (shown once), signed in with and revoked; a schedule created, edited and deleted from its
form; a fan-out started from its form; seed 004's sample imported, exported and deleted from the
Workflows page; a `read` token offered none of these controls."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Dialog, FilePayload, expect

from scriptbus.events.secret_box import ensure_key_pair
from tests.helpers.browser import api_call, shot, sign_in, sign_out
from tests.helpers.processes import ServiceProcess
from tests.helpers.seed004 import SEED_004_SAMPLE
from tests.helpers.stack import Stack, running_stack
from tests.helpers.tokens import bearer
from tests.helpers.waiting import eventually

ADMIN = "sb_console-admin-pages-token"
# Not UTF-8 and with a NUL: the upload and the download must keep every byte.
PAYLOAD = b"#!/bin/sh\necho deployed\n\x00\xff\xfe binary tail " * 300
SECRET_VALUE = "hunter2-never-shown-again"
# Controls a `read` token must not be offered on any of the admin pages.
WRITE_BUTTONS = ("Upload", "Set", "Create token", "Revoke", "Delete", "Create schedule", "Edit", "Pause",
                 "Run on hosts", "Import", "Remove project", "Remove what it names")  # fmt: skip


async def _api(stack: Stack, method: str, path: str, token: str = ADMIN, **kwargs: Any) -> Any:
    return await api_call(stack, method, path, token, **kwargs)


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_admin_pages_from_the_console(
    start_service: Callable[..., ServiceProcess], browser: Browser, tmp_path: Path
) -> None:
    _private, public = ensure_key_pair(tmp_path / "keys")
    gateway_env = {"SCRIPTBUS_API_TOKENS": ADMIN, "SCRIPTBUS_SECRETS_PUBLIC_KEY_FILE": str(public)}
    async with running_stack(start_service, gateway_env=gateway_env) as stack:
        await _api(stack, "POST", "/api/v1/commands", json={"name": "simple", "script": 'echo "simple $1"'})
        page = await browser.new_page(timezone_id="UTC", accept_downloads=True)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", _accept)
        await sign_in(page, stack.api, ADMIN)
        nav = page.locator("#nav")
        for label in ("Schedules", "Files", "Secrets", "Tokens"):
            await expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()

        # Files: upload from a file input, listed with its sha256, downloaded byte for byte, deleted.
        await nav.get_by_role("link", name="Files").click()
        await page.get_by_label("File", exact=True).set_input_files(
            files=FilePayload(name="deploy.sh", mimeType="application/octet-stream", buffer=PAYLOAD)
        )
        await page.get_by_label("Store as").fill("tools/deploy.sh")
        await page.get_by_role("button", name="Upload").click()
        sha = hashlib.sha256(PAYLOAD).hexdigest()
        await expect(page.get_by_test_id("sha-tools/deploy.sh")).to_have_text(sha)
        await shot(page, "files")
        async with page.expect_download() as downloading:
            await page.get_by_role("link", name="Download tools/deploy.sh").click()
        download = await downloading.value
        assert Path(await download.path()).read_bytes() == PAYLOAD
        listed = await _api(stack, "GET", "/api/v1/files")
        stored = [(f["name"], f["sha256"], f["stored_by"]) for f in listed["files"]]
        assert stored == [("tools/deploy.sh", sha, "admin")]
        await page.get_by_role("button", name="Delete tools/deploy.sh").click()
        await expect(page.get_by_test_id("files")).to_contain_text("No files stored.")
        assert (await stack.client.get("/api/v1/files/tools/deploy.sh", headers=bearer(ADMIN))).status_code == 404

        # Secrets: set from a password field; the value is nowhere on the page afterwards.
        await nav.get_by_role("link", name="Secrets").click()
        await page.get_by_label("Name").fill("DB_PASSWORD")
        await page.get_by_label("Value").fill(SECRET_VALUE)
        await page.get_by_role("button", name="Set", exact=True).click()
        await expect(page.get_by_test_id("secrets").locator('tr[data-secret="DB_PASSWORD"]')).to_contain_text("1")
        await expect(page.get_by_label("Value")).to_have_value("")
        assert SECRET_VALUE not in await page.content()
        await page.get_by_label("Name").fill("bad name")
        await page.get_by_label("Value").fill("x")
        await page.evaluate("document.querySelector('[data-testid=secret-form]').noValidate = true")
        await page.get_by_role("button", name="Set", exact=True).click()
        await expect(page.get_by_role("alert")).to_contain_text("name")  # the API's 422, shown
        await shot(page, "secrets")
        assert [s["name"] for s in (await _api(stack, "GET", "/api/v1/secrets"))["items"]] == ["DB_PASSWORD"]

        # Tokens: a read token made in the console, shown once.
        await nav.get_by_role("link", name="Tokens").click()
        await page.get_by_label("Name (who holds it)").fill("watcher")
        await page.get_by_label("Role").select_option("read")
        await page.get_by_role("button", name="Create token").click()
        await expect(page.get_by_test_id("new-token")).to_contain_text("shown only once")
        reader = (await page.get_by_test_id("new-token-value").text_content() or "").strip()
        assert reader.startswith("sb_")
        await expect(page.get_by_test_id("tokens").locator('tr[data-token="watcher"]')).to_contain_text("read")
        await shot(page, "tokens")
        await page.reload()
        await expect(page.get_by_test_id("tokens").locator('tr[data-token="watcher"]')).to_be_visible()
        assert reader not in await page.content()

        # Workflows: seed 004's sample imported as pasted (a bad paste gets the API's reason), exported.
        await nav.get_by_role("link", name="Workflows").click()
        await page.get_by_text("Import seed 004's JSON…").click()
        await page.get_by_label("Seed 004's JSON").fill("{not json")
        await page.get_by_role("button", name="Import", exact=True).click()
        await expect(page.get_by_test_id("import").get_by_role("alert")).to_contain_text("JSON")
        await page.get_by_label("Seed 004's JSON").fill(SEED_004_SAMPLE)
        await page.get_by_role("button", name="Import", exact=True).click()
        await expect(page.locator('[data-project="pr1"] [data-workflow="wf1"]')).to_contain_text("t12")
        await shot(page, "workflows-admin")
        href = await page.get_by_role("link", name="Export wf1").get_attribute("href")
        exported = json.loads((await (await page.request.get(stack.api + str(href))).body()).decode())
        tasks = exported["context"]["project"]["workflows"][0]["tasks"]
        assert [t["name"] for t in tasks] == ["t11", "t12"]

        # Schedules: created from the form (a cron in UTC), listed with its next fire times, edited, deleted.
        await nav.get_by_role("link", name="Schedules").click()
        form = page.get_by_test_id("schedule-form")
        await form.get_by_label("Name", exact=True).fill("nightly")
        await form.get_by_label("Cron (5 fields)").fill("0 3 * * *")
        await form.get_by_label("Command").fill("simple")
        await form.get_by_label("Arguments").fill("7")
        await form.get_by_role("button", name="Create schedule").click()
        await expect(page.get_by_test_id("next-nightly")).to_contain_text("3:00:00")
        await form.get_by_label("Name", exact=True).fill("bad")
        await form.get_by_label("Cron (5 fields)").fill("not a cron")
        await form.get_by_role("button", name="Create schedule").click()
        await expect(form.get_by_role("alert")).to_contain_text("cron")
        await form.get_by_label("Name", exact=True).fill("often")
        await form.get_by_label("Fires at").select_option("every")
        await form.get_by_label("Every (s)").fill("3600")
        await form.get_by_label("What it runs").select_option("workflow")
        await form.get_by_label("Project").fill("pr1")
        await form.get_by_label("Workflow", exact=True).fill("wf1")
        await form.get_by_role("button", name="Create schedule").click()
        await expect(page.get_by_test_id("schedules").locator('tr[data-schedule="often"]')).to_contain_text(
            "workflow pr1/wf1"
        )
        await page.get_by_role("button", name="Edit nightly").click()
        await expect(form.get_by_label("Arguments")).to_have_value("7")
        await form.get_by_label("Cron (5 fields)").fill("30 4 * * *")
        await form.get_by_role("button", name="Save schedule").click()
        await expect(page.get_by_test_id("next-nightly")).to_contain_text("4:30:00")
        nightly = await _api(stack, "GET", "/api/v1/schedules/nightly")
        assert (nightly["cron"], nightly["args"], nightly["command_name"]) == ("30 4 * * *", ["7"], "simple")
        await shot(page, "schedules")
        await page.get_by_role("button", name="Delete often").click()
        await expect(page.get_by_test_id("schedules").locator('tr[data-schedule="often"]')).to_have_count(0)

        # A fan-out from the Fleet page's form: its page shows the grid of hosts.
        await nav.get_by_role("link", name="Fleet").click()
        await page.get_by_role("link", name="Run on many hosts").click()
        await page.get_by_label("Script (bash)").fill('echo "on $1"')
        await page.get_by_label("Arguments").fill("every host")
        await page.get_by_label("Labels (key=value)").fill("nonsense")
        await page.get_by_role("button", name="Run on hosts").click()
        await expect(page.get_by_role("alert")).to_contain_text("key=value")
        await page.get_by_label("Labels (key=value)").fill("")
        await page.get_by_label("At most at once").fill("2")
        await shot(page, "fanout-new")
        await page.get_by_role("button", name="Run on hosts").click()
        await page.wait_for_url(re.compile(r".*#/fanouts/[0-9a-f-]{36}$"))
        host = page.get_by_test_id("hosts").locator('[data-host="local"]')
        await expect(host).to_contain_text("succeeded", timeout=30_000)
        fanout = await _api(stack, "GET", f"/api/v1/fanouts/{page.url.rsplit('/', 1)[1]}")
        assert (fanout["args"], fanout["max_parallel"], fanout["requested_by"]) == (["every host"], 2, "admin")

        # Then, from the Workflows page: a workflow deleted, the project removed.
        await nav.get_by_role("link", name="Workflows").click()
        await page.get_by_role("button", name="Delete wf1").click()
        await expect(page.locator('[data-project="pr1"] [data-workflow="wf1"]')).to_have_count(0)
        await expect(page.locator('[data-project="pr1"] [data-workflow="wf2"]')).to_be_visible()
        await page.get_by_role("button", name="Remove project pr1").click()
        await expect(page.locator('[data-project="pr1"]')).to_have_count(0)
        assert (await _api(stack, "GET", "/api/v1/projects"))["items"] == []

        # The console-made read token: sign out, sign in with it; none of the write controls is offered.
        await sign_out(page)
        await sign_in(page, stack.api, reader)
        await expect(page.get_by_test_id("whoami")).to_have_text("watcher · read")
        await expect(nav.get_by_role("link", name="Files")).to_be_visible()
        for label in ("Secrets", "Tokens"):
            await expect(nav.get_by_role("link", name=label, exact=True)).to_have_count(0)
        await _api(stack, "PUT", "/api/v1/files/readme.txt", content=b"hello", headers={"Content-Type": "text/plain"})
        json_body = {"Content-Type": "application/json"}
        await _api(stack, "POST", "/api/v1/projects/import", content=SEED_004_SAMPLE, headers=json_body)
        for where, seen in (("#/files", "readme.txt"), ("#/secrets", "DB_PASSWORD"), ("#/schedules", "nightly"),
                            ("#/workflows", "wf1"), ("#/fleet", "local"), ("#/fanouts/new", "may not")):  # fmt: skip
            await page.goto(f"{stack.api}/{where}")
            await expect(page.locator("main")).to_contain_text(seen)
            for name in WRITE_BUTTONS:
                await expect(page.get_by_role("button", name=re.compile(f"^{name}\\b"))).to_have_count(0)
            await expect(page.get_by_role("link", name="Run on many hosts")).to_have_count(0)
            await expect(page.locator("main input[type=file], main input[type=password]")).to_have_count(0)
            await shot(page, f"read-only-{where.strip('#/').replace('/', '-')}")
        await page.goto(f"{stack.api}/#/files")
        await expect(page.get_by_role("link", name="Download readme.txt")).to_be_visible()

        # Back as the admin: revoke the console-made token; the API refuses it from then on.
        await sign_out(page)
        await sign_in(page, stack.api, ADMIN)
        await page.goto(f"{stack.api}/#/tokens")
        await page.get_by_role("button", name="Revoke watcher").click()
        await expect(page.get_by_role("button", name="Revoke watcher")).to_have_count(0)

        async def refused() -> bool:
            return (await stack.client.get("/api/v1/runs", headers=bearer(reader))).status_code == 401

        await eventually(refused, what="the revoked token refused")
        assert errors == []
