"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real
`rosey run`: the table, a SIGKILLed plugin's restart and a growing memory plot seen without a
reload, the restart button refused without the operator token and working with it, plugins'
output shown as text, and a screenshot."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import RunningRosey, start_run

from .dashboard_fixtures import base_url, plugin_row, send, token, write_hog

pytestmark = pytest.mark.timeout(150)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000  # for the DOM to show what the bot did (ticks are 2 s apart)

playwright_api = pytest.importorskip(
    "playwright.async_api",
    reason="the dashboard's browser test needs Playwright: pip install playwright (in rosey-bot[dev])",
)
if not os.access(CHROMIUM, os.X_OK) and shutil.which("chromium") is None:
    pytest.skip(
        "the dashboard's browser test needs Debian's chromium: apt-get install chromium",
        allow_module_level=True,
    )


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[RunningRosey]:
    write_hog(tmp_path / "plugins", "hog")
    write_hog(tmp_path / "plugins", "calm")
    instance = await start_run(tmp_path)
    try:
        yield instance
    finally:
        if instance.proc.returncode is None:
            instance.proc.terminate()
            await instance.proc.wait()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A chromium context with a new profile of its own (nothing shared with other runs)."""
    async with playwright_api.async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1440, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


def watch_errors(page: Any) -> list[str]:
    """Script errors and console errors (a CSP refusal shows there) of ``page``."""
    errors: list[str] = []

    def console(msg: Any) -> None:
        # The refused button's answer (401) is expected; any other error is not.
        if msg.type == "error" and "status of 401" not in msg.text:
            errors.append(f"console: {msg.text}")

    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", console)
    return errors


async def test_the_dashboard_live_in_a_browser(bot: RunningRosey, browser: Any, tmp_path: Path) -> None:
    url, secret = base_url(bot), token(bot)
    page = await browser.new_page()
    errors = watch_errors(page)

    # Without the token: the table and plots (open), but no buttons or logs.
    await page.goto(f"{url}/?plugin=calm")
    for name in ("hog", "calm"):
        await page.wait_for_selector(f'tr[data-name="{name}"] td.state.running', timeout=WAIT_MS)
    assert (await page.text_content("#auth")) == "read-only"

    # A plugin killed behind the bot's back shows its restart, without a reload.
    calm = await plugin_row(bot, "calm")
    os.kill(calm["pid"], signal.SIGKILL)
    await page.wait_for_function(
        """(old) => { const r = window.roseyDashboard.row("calm");
                     return r && r.state === "running" && r.pid && r.pid !== old && r.restarts >= 1; }""",
        arg=calm["pid"],
        timeout=WAIT_MS,
    )
    restarted = await plugin_row(bot, "calm")
    cells = page.locator('tr[data-name="calm"]')
    assert (await cells.locator('td[data-col="pid"]').text_content()) == str(restarted["pid"])
    assert "SIGKILL" in (await cells.locator('td[data-col="last_exit"]').text_content() or "")

    # The restart button without the token: refused, and the plugin is untouched.
    await page.click('.actions button[data-action="restart"]')
    await page.wait_for_selector("#action-message.error", timeout=WAIT_MS)
    assert "token" in (await page.text_content("#action-message") or "")
    assert (await plugin_row(bot, "calm"))["pid"] == restarted["pid"]
    assert "operator token" in (await page.text_content("#log-note") or "")

    # With the token (from `rosey dashboard`'s link): it leaves the address bar at once.
    page = await browser.new_page()
    errors += watch_errors(page)
    await page.goto(f"{url}/?plugin=hog#token={secret}")
    await page.wait_for_selector('tr[data-name="hog"] td.state.running', timeout=WAIT_MS)
    assert "token" not in page.url
    assert (await page.text_content("#auth")) == "operator"

    # The memory plot of a plugin that allocates grows (the data the plot holds).
    await page.wait_for_function("() => window.roseyDashboard.selected() === 'hog'", timeout=WAIT_MS)
    await page.wait_for_function(
        "() => (window.roseyDashboard.plotData('mem') || [[]])[1].some((v) => v !== null)", timeout=WAIT_MS
    )
    before = max(
        v for v in (await page.evaluate("window.roseyDashboard.plotData('mem')"))[1] if v is not None
    )
    await send(bot, "hog", "grow", "64")
    await page.wait_for_function(
        "(floor) => { const d = window.roseyDashboard.plotData('mem');"
        " const v = d[1].filter((x) => x !== null); return v.length && v[v.length - 1] > floor; }",
        arg=before + 48,
        timeout=WAIT_MS,
    )

    # A plugin's output is text, never markup.
    await send(bot, "hog", "say", '<img src=x id=pwned onerror="window.__pwned=1">')
    await page.wait_for_function(
        "() => document.getElementById('log').textContent.includes('<img src=x id=pwned')", timeout=WAIT_MS
    )
    assert await page.evaluate("document.querySelector('#log img') === null && window.__pwned === undefined")

    # The restart button with the token: a new process, in the bot and on the page.
    hog = await plugin_row(bot, "hog")
    await page.click('.actions button[data-action="restart"]')
    await page.wait_for_selector("#action-message.ok", timeout=WAIT_MS)
    after = await plugin_row(bot, "hog")
    assert after["state"] == "running" and after["pid"] not in (None, hog["pid"])
    await page.wait_for_function(
        "(pid) => window.roseyDashboard.row('hog').pid === pid", arg=after["pid"], timeout=WAIT_MS
    )

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert errors == [], errors
