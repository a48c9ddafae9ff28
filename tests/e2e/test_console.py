"""The web console in a real headless Chromium against the real stack, with tokens: sign-in, a run
started from the page with its log arriving live, Stop, Commands, what a `read` token is offered and
refused, CSRF, and a 100 MB log that opens at once (its tail)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from playwright.async_api import Browser, expect

from tests.helpers.browser import shot, sign_in, sign_out
from tests.helpers.processes import ServiceProcess
from tests.helpers.stack import Stack, running_stack
from tests.helpers.tokens import bearer, make_token
from tests.helpers.waiting import eventually

ADMIN = "sb_console-admin-token"
HUNDRED_MB = 100 * 1024 * 1024


async def _run(stack: Stack, run_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v1/runs/{run_id}", headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_sign_in_run_watch_live_stop_and_commands(
    start_service: Callable[..., ServiceProcess], browser: Browser
) -> None:
    async with running_stack(start_service, gateway_env={"SCRIPTBUS_API_TOKENS": ADMIN}) as stack:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Signed out: the sign-in form, and the API refuses the page's calls.
        await page.goto(stack.api + "/")
        await expect(page.get_by_test_id("signin")).to_be_visible()
        await shot(page, "signin")
        await page.get_by_label("API token").fill("wrong")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("not valid")
        await sign_in(page, stack.api, ADMIN)
        await expect(page.get_by_test_id("whoami")).to_have_text("admin · admin")
        # The cookie opens /docs too (a browser sends no bearer header there).
        assert (await stack.client.get("/docs")).status_code == 401
        assert (await page.request.get(stack.api + "/docs")).status == 200

        # Start a run from the page; its lines (with colour) arrive while it runs.
        await page.get_by_text("Run a script…").click()
        await page.get_by_label("Run a script").fill(
            "for i in $(seq 1 600); do echo \"line $i\"; printf '\\033[31mred %s\\033[0m\\n' $i >&2; sleep 0.1; done"
        )
        await page.get_by_role("button", name="Run", exact=True).click()
        await page.wait_for_url("**/#/runs/*")
        run_id = page.url.rsplit("/", 1)[1]
        log = page.get_by_test_id("log")
        await expect(log).to_contain_text("line 3", timeout=20_000)
        assert (await _run(stack, run_id))["status"] == "running"
        await expect(log).to_contain_text("line 8")  # still arriving on the same page
        await expect(log.locator("span.f1").first).to_have_text("red 1\n")
        await shot(page, "run-live")

        await page.get_by_role("button", name="Stop").click()
        await expect(page.get_by_test_id("run-meta")).to_contain_text("stopped", timeout=20_000)
        await expect(page.get_by_role("button", name="Stop")).to_have_count(0)
        assert (await _run(stack, run_id))["status"] == "stopped"
        await expect(page.get_by_test_id("outcome")).to_contain_text("signal 15")
        await shot(page, "run-stopped")

        # The runs list shows it; it takes in new runs while open.
        await page.goto(stack.api + "/#/runs")
        runs = page.get_by_test_id("runs")
        await expect(runs.locator(f'tr[data-run="{run_id}"]')).to_contain_text("stopped")
        other = await stack.client.post("/api/v1/runs", json={"script": "echo other"}, headers=bearer(ADMIN))
        await expect(runs.locator(f'tr[data-run="{other.json()["id"]}"]')).to_be_visible()
        await shot(page, "runs")

        # Commands: create one, run it with an argument and env from the form.
        await page.goto(stack.api + "/#/commands/new")
        await page.get_by_label("Name", exact=True).fill("greet")
        await page.get_by_label("Script (bash)").fill('echo "hello $1 from $WHERE"')
        await page.get_by_role("button", name="Create").click()
        await expect(page.get_by_role("heading", name="Command greet")).to_be_visible()
        await shot(page, "command")
        await page.get_by_label("Arguments").fill("world")
        await page.get_by_label("Environment", exact=True).fill("WHERE=the console")
        await page.get_by_role("button", name="Run", exact=True).click()
        await page.wait_for_url("**/#/runs/*")
        await expect(page.get_by_test_id("log")).to_contain_text("hello world from the console", timeout=20_000)
        await page.goto(stack.api + "/#/commands")
        await expect(page.get_by_test_id("commands")).to_contain_text("greet")
        await shot(page, "commands")

        # Sign out: the form again, and the cookie no longer opens the API.
        await sign_out(page)
        status = await page.evaluate("fetch('/api/v1/runs').then(r => r.status)")
        assert status == 401
        assert errors == []  # no uncaught error in the page's scripts


async def test_read_token_csrf_and_a_100_mb_log(start_service: Callable[..., ServiceProcess], browser: Browser) -> None:
    async with running_stack(start_service, gateway_env={"SCRIPTBUS_API_TOKENS": ADMIN}) as stack:
        admin = bearer(ADMIN)
        reader = (await make_token(stack.client, "read", "watcher", as_token=ADMIN))["token"]
        # 100 MB of lines, written fast; the last line tells the tail was loaded.
        big = await stack.client.post(
            "/api/v1/runs",
            json={
                "script": f"yes 'a line of the big log, sixty-four bytes long ......................' "
                f"| head -c {HUNDRED_MB}; echo; echo THE-END"
            },
            headers=admin,
        )
        assert big.status_code == 202, big.text
        big_id = big.json()["id"]
        sleeper = await stack.client.post("/api/v1/runs", json={"script": "sleep 600"}, headers=admin)
        sleeper_id = sleeper.json()["id"]

        # A phone's viewport: the pages must stay usable there.
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        page = await context.new_page()
        await sign_in(page, stack.api, reader)
        await expect(page.get_by_test_id("whoami")).to_have_text("watcher · read")
        await expect(page.get_by_text("Run a script…")).to_have_count(0)

        await page.goto(f"{stack.api}/#/runs/{sleeper_id}")
        await expect(page.get_by_test_id("run-meta")).to_contain_text("running", timeout=20_000)
        await expect(page.get_by_role("button", name="Stop")).to_have_count(0)
        await expect(page.get_by_role("button", name="Run again")).to_have_count(0)
        await expect(page.get_by_role("button", name="Load earlier")).to_be_hidden()  # nothing earlier
        await shot(page, "run-read-only")
        # The API is the guard: a stop forged with the read token's cookie (and the header) is refused.
        forged = await page.evaluate(
            f"fetch('/api/v1/runs/{sleeper_id}/stop', {{method: 'POST', headers: {{'X-Scriptbus-Console': '1'}}}})"
            ".then(r => r.status)"
        )
        assert forged == 403
        assert (await _run(stack, sleeper_id))["status"] == "running"

        # An admin's cookie without the console's header (what a cross-site form sends) is refused too.
        admin_page = await (await browser.new_context()).new_page()
        await sign_in(admin_page, stack.api, ADMIN)
        no_header = await admin_page.evaluate(
            f"fetch('/api/v1/runs/{sleeper_id}/stop', {{method: 'POST'}}).then(r => r.status)"
        )
        assert no_header == 403
        assert (await _run(stack, sleeper_id))["status"] == "running"

        # The 100 MB log: once stored, its page opens with the tail in under 2 s (the criterion).
        async def stored() -> bool:
            run = await _run(stack, big_id)
            return bool(run["status"] == "succeeded" and run["output_bytes"] > HUNDRED_MB)

        await eventually(stored, timeout=150, interval=0.5, what="the 100 MB log stored")
        started = time.monotonic()
        await page.goto(f"{stack.api}/#/runs/{big_id}")
        await expect(page.get_by_test_id("log")).to_contain_text("THE-END", timeout=10_000)
        elapsed = time.monotonic() - started
        print(f"100 MB log: tail shown {elapsed:.2f} s after navigation")
        assert elapsed < 2.0
        size: int = await page.evaluate("document.querySelector('[data-testid=log]').textContent.length")
        assert size <= 300 * 1024  # only the tail is in the page
        await page.get_by_role("button", name="Load earlier").click()

        async def grown() -> bool:
            longer: int = await page.evaluate("document.querySelector('[data-testid=log]').textContent.length")
            return bool(longer > size)

        await eventually(grown, what="an earlier part of the log loaded")
        await shot(page, "run-100mb")
        await context.close()


async def test_output_tail_and_limit(stack: Stack) -> None:
    """`tail` starts that many bytes before the end (of the stream), says where in X-Output-Offset;
    `limit` cuts the answer; `tail` with `offset` is refused."""
    script = "printf 'o1o2o3o4'; printf 'e1e2e3' >&2; printf 'o5'"
    run = (await stack.client.post("/api/v1/runs", json={"script": script})).json()

    async def done() -> bool:
        return bool((await stack.client.get(f"/api/v1/runs/{run['id']}")).json()["status"] == "succeeded")

    await eventually(done, what="run finished")
    base = f"/api/v1/runs/{run['id']}/output"
    for stream in [None, "stdout", "stderr"]:
        params: dict[str, str | int] = {"stream": stream} if stream else {}
        whole = (await stack.client.get(base, params=params)).content
        assert len(whole) == {None: 16, "stdout": 10, "stderr": 6}[stream]
        tail = await stack.client.get(base, params={**params, "tail": 4})
        assert tail.status_code == 200 and tail.content == whole[-4:], stream
        assert tail.headers["x-output-offset"] == str(len(whole) - 4)
        more = await stack.client.get(base, params={**params, "tail": 1000})
        assert more.content == whole and more.headers["x-output-offset"] == "0"
        page = await stack.client.get(base, params={**params, "offset": 1, "limit": 3})
        assert page.content == whole[1:4]
    refused = await stack.client.get(base, params={"offset": 1, "tail": 2})
    assert refused.status_code == 422 and "tail" in refused.text
    assert (await stack.client.get(base, params={"limit": 0})).status_code == 422
