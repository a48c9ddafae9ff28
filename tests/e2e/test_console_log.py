"""The console's run log in a real headless Chromium against the real stack: a run started from the Runs
page's form (with env, args, a timeout and an artifact pattern; a bad pattern's 4xx shown next to the form)
whose stderr is marked apart from stdout with its colours kept, its artifact downloaded; "Jump to start" on
a large log (its first line, then the gap, then the tail); and a long live log that keeps a bounded page."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.helpers.browser import shot
from tests.helpers.stack import Stack
from tests.helpers.waiting import eventually

MAX_LINES = 20000  # log.js's MAX_LINES
BOTH_STREAMS = (
    'echo "out $1 $WHO"; echo err-line >&2; printf "\\033[32mgreen-err\\033[0m\\n" >&2; '
    "echo report > report.txt; echo out-end"
)
BIG = "echo FIRST-LINE; yes 'filler line of the big log .........' | head -c 2000000; echo; echo LAST-LINE"
# 45,000 lines, a part at a time, so some of them arrive live; then it stays running.
LONG_LIVE = "for i in 1 2 3; do seq $((i*15000-14999)) $((i*15000)); sleep 0.3; done; echo LIVE-END; sleep 600"


async def _finished(stack: Stack, run_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any]:
        run: dict[str, Any] = (await stack.client.get(f"/api/v1/runs/{run_id}")).json()
        assert run["status"] == "succeeded", run["status"]
        return run

    return await eventually(done, timeout=60, what=f"run {run_id} succeeded")


async def _log_text(page: Page) -> str:
    text: str = await page.evaluate("document.querySelector('[data-testid=log]').textContent")
    return text


async def test_streams_artifacts_jump_to_start_and_a_bounded_live_log(stack: Stack, browser: Browser) -> None:
    big = await stack.client.post("/api/v1/runs", json={"script": BIG})
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # The run form: a bad artifact pattern is refused by the API and said next to the form.
    await page.goto(stack.api + "/#/runs")
    await page.get_by_text("Run a script…").click()
    form = page.get_by_test_id("quick-run")
    await form.get_by_label("Run a script").fill(BOTH_STREAMS)
    await form.get_by_label("Arguments").fill("first")
    await form.get_by_label("Environment").fill("WHO=the-form")
    await form.get_by_label("Timeout (s)").fill("60")
    await form.get_by_label("Artifacts").fill("../outside.txt")
    await form.get_by_role("button", name="Run", exact=True).click()
    await expect(page.get_by_test_id("quick-run-problem")).to_contain_text("artifacts")
    await expect(form.get_by_test_id("quick-files")).to_contain_text("none stored")
    await form.get_by_label("Artifacts").fill("*.txt")
    await form.get_by_role("button", name="Run", exact=True).click()
    await page.wait_for_url("**/#/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    run = await _finished(stack, run_id)
    assert run["env"] == {"WHO": "the-form"} and run["args"] == ["first"] and run["timeout_s"] == 60

    # stderr pieces are marked apart from stdout, their colours kept.
    log = page.get_by_test_id("log")
    await expect(log).to_contain_text("out-end", timeout=20_000)
    await expect(log.locator("span.out").first).to_contain_text("out first the-form\n")
    await expect(log.locator("span.err").first).to_contain_text("err-line")
    await expect(log.locator("span.err span.f2")).to_have_text("green-err")
    await expect(log.locator("span.out", has_text="err-line")).to_have_count(0)
    await expect(log.locator("span.err", has_text="out-end")).to_have_count(0)
    # Its artifact, downloadable.
    link = page.get_by_test_id("artifacts").get_by_role("link", name="report.txt")
    await expect(link).to_be_visible()
    href = await link.get_attribute("href")
    assert href is not None
    download = await page.request.get(stack.api + href)
    assert download.status == 200 and await download.body() == b"report\n"
    await shot(page, "run-streams-artifacts")

    # Jump to start on a large log: its first line, then the gap, then the tail.
    big_id = big.json()["id"]
    await _finished(stack, big_id)
    await page.goto(f"{stack.api}/#/runs/{big_id}")
    await expect(log).to_contain_text("LAST-LINE", timeout=20_000)
    assert "FIRST-LINE" not in await _log_text(page)
    gap = page.get_by_test_id("log-gap")
    await expect(gap).to_contain_text("not loaded")
    await page.get_by_role("button", name="Jump to start").click()
    await expect(page.get_by_test_id("log-head")).to_contain_text("FIRST-LINE")
    await expect(gap).to_contain_text("bytes")
    text = await _log_text(page)
    assert text.startswith("FIRST-LINE\n")
    assert text.index("FIRST-LINE") < text.index("not loaded") < text.index("LAST-LINE")
    missing = int(await gap.get_attribute("data-bytes") or 0)
    await shot(page, "run-jump-to-start")
    await gap.scroll_into_view_if_needed()
    await shot(page, "run-log-gap")
    await gap.get_by_role("button", name="Load more").click()
    await expect(gap).not_to_have_attribute("data-bytes", str(missing))
    assert int(await gap.get_attribute("data-bytes") or 0) < missing

    # A long live log keeps at most MAX_LINES lines in the page; the oldest wait in the gap.
    live = await stack.client.post("/api/v1/runs", json={"script": LONG_LIVE})
    live_id = live.json()["id"]
    await page.goto(f"{stack.api}/#/runs/{live_id}")
    await expect(log).to_contain_text("LIVE-END", timeout=30_000)
    text = await _log_text(page)
    assert "45000\n" in text and text.count("\n") <= MAX_LINES + 2  # + the gap's own line
    assert not text.startswith("1\n")
    await expect(gap.get_by_role("button", name="Load earlier")).to_be_visible()
    await shot(page, "run-live-bounded")
    await stack.client.post(f"/api/v1/runs/{live_id}/stop")
    assert errors == []
