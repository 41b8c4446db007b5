"""Stuck signals and usage in Chromium, with real claude turns against the fake Messages API:
the repeating agent's item appears on top, live, with its badge on the agent's row and the
count in the title; its **cancel turn** clears it; the usage panel shows the agent's spend
and its last 24 hours; on a phone the item keeps its actions."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.browser import PHONE, WAIT_MS, Shots, browser, open_dashboard, problems
from tests.e2e.turns import hive_with, operator_send
from tests.fake_anthropic import Reply, Seen, text, tool_use


def repeats_whoami(seen: Seen) -> Reply:
    if seen.agent() == "alice":
        return tool_use("mcp__hyperhive__whoami", {})
    return text("ok")


async def test_a_stuck_agent_shows_on_top_with_its_badge_and_cancel_clears_it(
    tmp_path: Path,
) -> None:
    shots = Shots(tmp_path / "shots")
    with hive_with(repeats_whoami, HIVE_STUCK_REPEAT="3") as (hive, _):
        assert hive.cli("spawn", "alice").returncode == 0
        async with browser() as b:
            page = await open_dashboard(b, hive)
            await operator_send(hive, "alice", "who are you?")
            item = page.locator('#attention [data-kind="stuck_repetition"]')
            await item.wait_for()  # live, without a reload
            assert "alice repeats itself" in await item.inner_text()
            await page.wait_for_function("/^\\(\\d+\\) hyperhive$/.test(document.title)")
            row = page.locator('[data-agent="alice"]')
            await row.get_by_text("repeating").first.wait_for()  # its badge
            for action in ("cancel-turn", "new-session", "stop"):
                assert await item.locator(f'[data-action="{action}"]').count() == 1
            await shots.take(page, "dashboard-stuck")

            phone = await open_dashboard(b, hive, viewport=PHONE)
            phone_item = phone.locator('#attention [data-kind="stuck_repetition"]')
            await phone_item.wait_for()
            box = await phone_item.locator('[data-action="cancel-turn"]').bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"]
            await shots.take(phone, "dashboard-stuck-phone")

            await item.locator('[data-action="cancel-turn"]').click()
            await item.wait_for(state="detached", timeout=WAIT_MS)
            await row.get_by_text("repeating").first.wait_for(state="detached")

            usage = page.locator('#usage [data-usage="alice"]')
            await usage.wait_for()  # the cancelled turn was counted, live
            # Its hour's bar comes with the hourly counts, which may follow the row itself.
            await usage.locator("svg.spark rect").first.wait_for()
            assert await page.locator('#usage [data-usage="*"]').count() == 1
            await page.locator("#usage").scroll_into_view_if_needed()
            await shots.take(page, "dashboard-usage")
            assert problems(page) == []
            assert problems(phone) == []
