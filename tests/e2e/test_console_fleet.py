"""The console's Workflows and Fleet pages in a real headless Chromium against the real stack: seed 004's
sample imported through the API and `wf1` started from the console and watched to its end, a long
workflow held, released and stopped from its page, executors with their pools, a fan-out's grid of
hosts, a schedule's next fire times and a pause from the console; a `read` token is offered none of it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from playwright.async_api import Browser, expect

from tests.helpers.browser import api_call, shot, sign_in
from tests.helpers.processes import ServiceProcess
from tests.helpers.seed004 import SEED_004_SAMPLE
from tests.helpers.stack import Stack, running_stack
from tests.helpers.tokens import make_token
from tests.helpers.waiting import eventually

ADMIN = "sb_console-fleet-admin-token"
# Seed 004's `simple` as a saved command: says when it starts and ends, and takes a moment ($1 tenths).
SIMPLE = 'echo "simple $1 start"; sleep "0.$1"; echo "simple $1 done"'
# Hover titles in seed 004's words: the definition's, and a step's after its run.
T11_TITLE = "t11: place 1, exec parallel\nfunction: simple 0"
T12_DONE = re.compile(r"^t12: place 2, exec await\nfunction: simple 5\nstatus: success0 \(succeeded\), attempt 1")
LONG = {"context": {"project": {"name": "slow", "workflows": [{"name": "long", "tasks": [
    {"name": "wait", "place": 1, "exec": "await", "script": "echo waiting; sleep 600"},
]}]}}}  # fmt: skip


async def _api(stack: Stack, method: str, path: str, **kwargs: Any) -> Any:
    return await api_call(stack, method, path, ADMIN, **kwargs)


async def test_workflows_and_fleet_from_the_console(
    start_service: Callable[..., ServiceProcess], browser: Browser
) -> None:
    async with running_stack(start_service, gateway_env={"SCRIPTBUS_API_TOKENS": ADMIN}) as stack:
        await _api(stack, "POST", "/api/v1/commands", json={"name": "simple", "script": SIMPLE})
        for document in (SEED_004_SAMPLE, json.dumps(LONG)):
            await _api(
                stack, "POST", "/api/v1/projects/import", content=document, headers={"Content-Type": "application/json"}
            )
        reader = (await make_token(stack.client, "read", "watcher", as_token=ADMIN))["token"]
        page = await browser.new_page(timezone_id="UTC")
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await sign_in(page, stack.api, ADMIN)

        # wf1 drawn as its sequence (t11 in the background), started from the console, watched to its end.
        await page.get_by_role("link", name="Workflows").click()
        wf1 = page.locator('[data-project="pr1"] [data-workflow="wf1"]')
        await expect(wf1.locator(".seq-row.background")).to_contain_text("t11")
        await expect(wf1.locator(".seq-row.main")).to_contain_text("t12")
        await expect(wf1.locator('[data-step="t11"]')).to_have_attribute("title", T11_TITLE)
        await shot(page, "workflows")
        await page.get_by_role("button", name="Start wf1").click()
        await page.wait_for_url("**/#/workflow-runs/*")
        wfrun_id = page.url.rsplit("/", 1)[1]
        for task in ("t11", "t12"):
            await expect(page.get_by_test_id(f"step-status-{task}")).to_have_text("succeeded", timeout=30_000)
        await expect(page.get_by_test_id("wfrun-meta")).to_contain_text("succeeded")
        await expect(page.locator('.seq [data-step="t12"]')).to_have_attribute("title", T12_DONE)
        await page.locator('.seq [data-step="t12"]').click()  # its log, from the step's run
        await expect(page.get_by_test_id("log")).to_contain_text("simple 5 start\nsimple 5 done")
        await shot(page, "workflow-run")
        wfrun = await _api(stack, "GET", f"/api/v1/workflow-runs/{wfrun_id}")
        steps = {s["name"]: s["status"] for s in wfrun["steps"]}
        assert steps == {"t11": "succeeded", "t12": "succeeded"}
        await page.get_by_role("link", name="pr1/wf1").click()
        await expect(page.get_by_test_id("wfruns").locator(f'tr[data-wfrun="{wfrun_id}"]')).to_contain_text("succeeded")
        await shot(page, "workflow")

        # A long workflow, started from its page: running, then held and released, later stopped.
        await page.goto(stack.api + "/#/workflows/slow/long")
        await page.get_by_role("button", name="Start", exact=True).click()
        await page.wait_for_url("**/#/workflow-runs/*")
        long_id = page.url.rsplit("/", 1)[1]
        await expect(page.get_by_test_id("step-status-wait")).to_have_text("running", timeout=30_000)

        # Fleet: the executor with its pool; a fan-out; a schedule with its next fire times.
        fanout = await _api(stack, "POST", "/api/v1/fanouts", json={"script": "echo on $HOSTNAME; exit 3"})
        await _api(
            stack, "POST", "/api/v1/schedules", json={"name": "nightly", "cron": "0 3 * * *", "command_id": "simple"}
        )
        await page.get_by_role("link", name="Fleet").click()
        local = page.get_by_test_id("executors").locator('tr[data-host="local"]')
        await expect(local).to_contain_text("online")
        await expect(local).to_contain_text("default")
        await expect(local).to_contain_text("/")  # load: running/capacity
        await expect(page.get_by_test_id("next-nightly")).to_contain_text("3:00:00")
        await expect(page.get_by_test_id("fanouts").locator(f'tr[data-fanout="{fanout["id"]}"]')).to_contain_text(
            "failed", timeout=30_000
        )
        await shot(page, "fleet")
        await page.goto(f"{stack.api}/#/fanouts/{fanout['id']}")
        host = page.get_by_test_id("hosts").locator('[data-host="local"]')
        await expect(host).to_contain_text("failed")
        await expect(host).to_contain_text("exit 3")
        await expect(page.get_by_role("button", name="Retry failed hosts")).to_be_visible()
        await shot(page, "fanout")

        # A `read` token, on a phone: it sees all of it and is offered none of the actions.
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        watcher = await context.new_page()
        watcher.on("pageerror", lambda error: errors.append(str(error)))
        await sign_in(watcher, stack.api, reader)
        await watcher.goto(f"{stack.api}/#/workflow-runs/{long_id}")
        await expect(watcher.get_by_test_id("step-status-wait")).to_have_text("running")
        await shot(watcher, "workflow-run-read-only")
        await watcher.goto(f"{stack.api}/#/fleet")
        await expect(watcher.get_by_test_id("next-nightly")).to_be_visible()
        await shot(watcher, "fleet-read-only")
        await watcher.goto(f"{stack.api}/#/fanouts/{fanout['id']}")
        await expect(watcher.get_by_test_id("hosts")).to_contain_text("exit 3")
        await watcher.goto(f"{stack.api}/#/workflows")
        await expect(watcher.locator('[data-workflow="wf1"]')).to_be_visible()
        for where in (f"#/workflow-runs/{long_id}", "#/fleet", f"#/fanouts/{fanout['id']}", "#/workflows"):
            await watcher.goto(f"{stack.api}/{where}")
            await expect(watcher.get_by_test_id("whoami")).to_have_text("watcher · read")
            await expect(watcher.locator("main [data-testid]").first).to_be_visible()
            for name in ("Stop", "Retry", "Retry failed hosts", "Pause", "Hold", "Start"):
                await expect(watcher.get_by_role("button", name=name, exact=True)).to_have_count(0)
            await expect(watcher.get_by_role("button", name="Pause nightly")).to_have_count(0)
            await expect(watcher.get_by_role("button", name="Start wf1")).to_have_count(0)
        await context.close()

        # The admin pauses the schedule from the console: the API then says so.
        await page.goto(stack.api + "/#/fleet")
        await page.get_by_role("button", name="Pause nightly").click()
        await expect(page.get_by_test_id("schedules").locator('tr[data-schedule="nightly"]')).to_contain_text("paused")

        async def paused() -> bool:
            return bool((await _api(stack, "GET", "/api/v1/schedules/nightly"))["paused"])

        await eventually(paused, what="the schedule paused")
        await expect(page.get_by_role("button", name="Resume nightly")).to_be_visible()

        # Hold, release and stop the long workflow from its page.
        await page.goto(f"{stack.api}/#/workflow-runs/{long_id}")
        await page.get_by_role("button", name="Hold", exact=True).click()
        await expect(page.get_by_test_id("step-status-wait")).to_contain_text("held")
        await page.get_by_role("button", name="Release", exact=True).click()
        await expect(page.get_by_role("button", name="Hold", exact=True)).to_be_visible()
        await page.get_by_role("button", name="Stop", exact=True).click()
        await expect(page.get_by_test_id("wfrun-meta")).to_contain_text("stopped", timeout=30_000)
        await expect(page.get_by_role("button", name="Retry", exact=True)).to_be_visible()
        assert (await _api(stack, "GET", f"/api/v1/workflow-runs/{long_id}"))["status"] == "stopped"
        assert errors == []
