"""An agent's row on the dashboard, in Chromium: its log followed without repeats, what
its tooltips say on this backend, the manager's row, and the actions folded on a phone."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.browser import PHONE, Shots, browser, open_dashboard, problems
from tests.e2e.hive import Hive


async def test_following_a_log_shows_its_tail_once(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    assert hive.cli("stop", "alice").returncode == 0  # its log stays as it is
    async with browser() as b:
        page = await open_dashboard(b, hive)
        await page.locator("#log-agent").select_option("alice")
        rows = page.locator("#log-term .row")
        await page.locator("#log-status", has_text="tail").wait_for()
        shown = await rows.all_text_contents()
        assert shown

        await page.locator("#log-follow").check()
        await page.locator("#log-status", has_text="following").wait_for()
        await page.wait_for_function(
            "n => document.querySelectorAll('#log-term .row').length <= n", arg=len(shown)
        )

        followed = await rows.all_text_contents()
        assert [t for t in followed if "earlier lines" not in t] == [
            t for t in shown if "earlier lines" not in t
        ]
        assert problems(page) == []


async def test_rows_say_what_the_local_backend_runs_and_the_manager_has_no_destroy(
    hive: Hive,
) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    async with browser() as b:
        page = await open_dashboard(b, hive)
        alice = page.locator('[data-agent="alice"][data-state="running"]')
        await alice.wait_for()
        titles = await page.locator(".agent-line [title]").evaluate_all(
            "nodes => nodes.map(n => n.title)"
        )
        assert titles and not [t for t in titles if "container" in t], titles
        assert "harness state: running" in titles
        manager = page.locator('[data-agent="hm1nd"]')
        await manager.locator('[data-action="stop"]').wait_for()
        assert await manager.locator('[data-action="destroy"]').count() == 0
        assert await alice.locator('[data-action="destroy"]').count() == 1
        assert problems(page) == []


async def test_on_a_phone_a_row_folds_its_actions_behind_one_button(
    hive: Hive, tmp_path: Path
) -> None:
    shots = Shots(tmp_path / "shots")
    assert hive.cli("spawn", "alice").returncode == 0
    async with browser() as b:
        page = await open_dashboard(b, hive, PHONE)
        alice = page.locator('[data-agent="alice"][data-state="running"]')
        await alice.wait_for()
        stop = alice.locator('[data-action="stop"]')
        menu = alice.locator('[data-action="menu"]')
        assert await menu.is_visible() and not await stop.is_visible()
        assert await alice.locator(".page-link").is_visible()
        await shots.take(page, "dashboard-phone-rows", full_page=True)

        await menu.click()
        await stop.wait_for(state="visible")
        assert await menu.get_attribute("aria-expanded") == "true"
        await shots.take(page, "dashboard-phone-menu", full_page=True)

        desktop = await open_dashboard(b, hive)
        row = desktop.locator('[data-agent="alice"][data-state="running"]')
        await row.locator('[data-action="stop"]').wait_for(state="visible")
        assert not await row.locator('[data-action="menu"]').is_visible()
        assert problems(page) == [] and problems(desktop) == []
