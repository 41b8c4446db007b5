"""Debian's Chromium driven by Playwright (never `playwright install`), and screenshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.e2e.dashboard import login_url
from tests.e2e.hive import Hive

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000
"""How long an expectation on the page may take."""


def chromium_path() -> str:
    found = os.environ.get("HIVE_TEST_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed; ./dev test installs it")
    return found


@asynccontextmanager
async def browser(*args: str) -> AsyncIterator[Browser]:
    """Chromium with `args` besides its usual ones (`--host-resolver-rules=…`, say)."""
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", *args])
        try:
            yield b
        finally:
            await b.close()


class Shots:
    """Screenshots of the page: into HIVE_SCREENSHOTS (`./dev screenshots` points it at
    docs/img) when set, else into the test's temp dir, so the path is always exercised.
    Toasts are cleared first: they are moments, not the state shown."""

    def __init__(self, fallback: Path) -> None:
        self.dir = Path(os.environ.get("HIVE_SCREENSHOTS") or fallback)
        self.dir.mkdir(parents=True, exist_ok=True)

    async def take(self, page: Page, name: str, full_page: bool = False) -> Path:
        path = self.dir / f"{name}.png"
        await page.evaluate("document.getElementById('toasts')?.replaceChildren()")
        if full_page:  # from the top: a sticky top bar is drawn where the page is scrolled to
            await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        assert path.stat().st_size > 0
        return path


async def open_dashboard(
    b: Browser, hive: Hive, viewport: dict[str, int] = DESKTOP, link: str | None = None
) -> Page:
    """A logged-in page on the dashboard (through `link`, a fresh login link by default),
    its event stream live. Console errors and page errors fail the test."""
    context = await b.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error"
            and "EventSource" not in msg.text
            and "Failed to load resource" not in msg.text
            else None
        ),
    )
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.hive_problems = problems  # type: ignore[attr-defined]
    await page.goto(link or login_url(hive))
    await page.wait_for_url(lambda url: url.endswith("/"))  # the login page's script moves on
    await page.locator("#conn", has_text="live").wait_for()
    return page


def problems(page: Page) -> list[str]:
    got: list[str] = page.hive_problems  # type: ignore[attr-defined]
    return got
