"""The dashboard at 40 agents, in Chromium: compact rows, the filter, the three orders, the
actions still reachable; and the message flow's bounded window, paged on scroll."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from playwright.async_api import Page

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from hive_share.names import MANAGER_NAME
from tests.e2e.browser import PHONE, Shots, browser, open_dashboard, problems
from tests.e2e.hive import Hive
from tests.e2e.state_load import spawn_all
from tests.e2e.turns import hive_with, wait_state
from tests.fake_anthropic import Reply, Seen, text

STATUSES = {
    "atlas": "mapping the service graph: 212 of 340 edges",
    "billing": "waiting for the ledger's export (03:00 UTC)",
    "builder": "building release 1.4.2 from main",
    "canary": "canary at 5% in eu-west: error rate 0.02%",
    "catalog": "",
    "checkout": "bisecting the flaky test_checkout_total, round 7 of 12",
    "ci-doctor": "rerunning the 3 flaky jobs of pipeline #8812",
    "crawler": "crawled 18,404 pages; 312 left in the queue",
    "dbadmin": "vacuum of orders done; reindexing order_items",
    "deployer": "idle until the next approved deploy",
    "docs": "rewriting the API guide's auth section",
    "etl": "nightly load finished in 42m",
    "fixtures": "",
    "frontend": "porting the settings page to the new form kit",
    "gateway": "rate limits raised for the partner API (approved)",
    "i18n": "German strings: 1,204 of 1,310 translated",
    "indexer": "reindexing search shard 4 of 9",
    "infra": "terraform plan: 3 to add, 1 to change",
    "ingest": "replaying yesterday's dead-letter queue (8,120 events)",
    "invoices": "drafting the March invoices for review",
    "k8s-ops": "draining node pool b for the kernel update",
    "ledger": "reconciled; 2 entries need a human look",
    "linter": "",
    "mailer": "newsletter queued for Thursday 09:00",
    "metrics": "dashboard for p99 latency per route is up",
    "mobile": "stopped: waiting for the App Store review",
    "notifier": "quiet hours until 07:00",
    "oncall": "watching the pager; nothing open",
    "payments": "asked the operator about the refund policy",
    "perf": "stopped after the load test",
    "planner": "splitting the Q3 roadmap into tickets",
    "pricing": "A/B test of the annual plan: day 4 of 14",
    "qa-bot": "exploratory run on staging: 2 bugs filed",
    "release": "release notes for 1.4.2 drafted",
    "reviewer": "reviewing PR #418: payments retry logic",
    "scheduler": "next cron window in 14m",
    "search": "tuning synonyms for 'invoice'",
    "security": "scanning the flaky dependency upgrade for CVEs",
    "support": "3 tickets answered, 1 escalated",
    "triage": "labelled 27 new issues",
}
BUSY = {"checkout", "ingest", "reviewer", "security", "ci-doctor"}
"""Their turns stay `thinking`: the fake API holds its answer."""
STOPPED = {"mobile", "perf"}
ASKER = "payments"
"""Asks the operator a question: the attention list names it."""


NAMED = """() => [
    ...[...document.querySelectorAll('#attention-list .attention-item .what')]
        .map(n => n.textContent),
    ...[...document.querySelectorAll('#agents-list .agent.attention')]
        .map(n => n.getAttribute('data-agent')),
]"""
"""The agents the attention list names, and the rows flagged as needing attention."""


TURNS = """() => Object.fromEntries([...document.querySelectorAll('#agents-list .agent')].map(
    n => [n.getAttribute('data-agent'),
          n.querySelector('.chip[title^="turn state: "]')?.textContent ?? null]))"""
"""Each row's turn state as its chip shows it (null: none, the agent is not running)."""


async def rows(page: Page) -> list[str]:
    names: list[str] = await page.locator("#agents-list [data-agent]").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-agent'))"
    )
    return names


async def wait_rows(page: Page, count: int) -> list[str]:
    await page.wait_for_function(
        "n => document.querySelectorAll('#agents-list [data-agent]').length === n", arg=count
    )
    return await rows(page)


async def populate(hive: Hive) -> None:
    """40 agents with their statuses: some in a turn, some stopped, one asking."""
    await spawn_all(hive, list(STATUSES))
    for name, status in STATUSES.items():
        if status:
            async with HiveClient(hive.agent_sock(name)) as agent:
                await agent.call(rq.SetStatus(cmd="set_status", status=status), rs.Done)
    async with HiveClient(hive.host_sock) as op:
        for name in sorted(BUSY):
            await op.call(rq.Send(cmd="send", to=name, body=f"{name}: carry on"), rs.Sent)
        for name in sorted(STOPPED):
            await op.call(rq.Stop(cmd="stop", name=name), rs.Done)
    await asyncio.gather(*(wait_state(hive, n, "thinking") for n in BUSY))
    async with HiveClient(hive.agent_sock(ASKER)) as asker:
        await asker.call(
            rq.Ask(cmd="ask", question="refund a duplicate charge older than 90 days?",
                   options=["yes", "no", "ask finance"], ttl_seconds=3600),
            rs.QuestionResult,
        )  # fmt: skip
    # To agents in a turn or stopped: queued, so no other turn starts.
    for sender, to, body in [
        ("planner", "reviewer", "PR #421 is next once #418 is in"),
        ("release", "mobile", "1.4.2 needs the new build number in the store listing"),
        ("qa-bot", "checkout", "test_checkout_total also fails on staging, seed 1234"),
    ]:
        async with HiveClient(hive.agent_sock(sender)) as agent:
            await agent.call(rq.Send(cmd="send", to=to, body=body), rs.Sent)


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_forty_agents_filter_sort_and_fold_their_actions(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    hold = threading.Event()

    def script(seen: Seen) -> Reply:
        if seen.agent() in BUSY and not seen.last_tool_results():
            return Reply(blocks=[{"type": "text", "text": "working"}], hold=hold)
        return text("ok")

    with hive_with(script) as (hive, _fake):
        try:
            await populate(hive)
            async with browser() as b:
                page = await open_dashboard(b, hive)
                everyone = await wait_rows(page, len(STATUSES) + 1)
                for name in BUSY:
                    await page.locator(f'[data-agent="{name}"]', has_text="thinking").wait_for()

                # One line per agent; the actions fold behind one button.
                assert await page.locator("#agents-list.compact").count() == 1
                heights = await page.locator("#agents-list .agent-line").evaluate_all(
                    "nodes => nodes.map(n => n.getBoundingClientRect().height)"
                )
                assert max(heights) < 34, heights
                row = page.locator('[data-agent="builder"]')
                stop = row.locator('[data-action="stop"]')
                assert not await stop.is_visible()
                await row.locator('[data-action="menu"]').click()
                await stop.wait_for(state="visible")
                await row.locator('[data-action="menu"]').click()
                await stop.wait_for(state="hidden")

                # Needs you first: the agents an attention item names (the asker) or flagged
                # (not answering, a login, stuck), then the rest by name, the manager first.
                # The attention list and the order it gives are drawn in one task.
                assert await page.locator("#agent-sort").input_value() == "attention"
                await page.locator("#attention-list [data-kind='question']").wait_for()
                by_name = [MANAGER_NAME, *sorted(STATUSES)]
                got, named = await rows(page), await page.evaluate(NAMED)
                quiet = [n for n in by_name if n not in named]
                assert ASKER in named and got[len(got) - len(quiet) :] == quiet, (got, named)

                # Busy first: in a turn (the five held, and any other that is), idle, stopped.
                await page.locator("#agent-sort").select_option("state")
                busy_first, turns = await rows(page), await page.evaluate(TURNS)
                busy = {n for n, t in turns.items() if t not in ("idle", None)}
                assert busy >= BUSY and set(busy_first[: len(busy)]) == busy, (busy_first, turns)
                assert set(busy_first[-len(STOPPED) :]) == STOPPED, busy_first

                await page.locator("#agent-sort").select_option("name")
                assert await rows(page) == by_name == sorted(everyone, key=by_name.index)

                # The filter: name, status text, state; every word must match.
                count = page.locator("#agents .count")
                flaky = [n for n, s in STATUSES.items() if "flaky" in s]
                await page.locator("#agent-filter").fill("flaky")
                assert await wait_rows(page, len(flaky)) == sorted(flaky)
                assert await count.text_content() == f"{len(flaky)} of {len(everyone)}"
                await page.locator("#agent-filter").fill("stopped")
                assert await wait_rows(page, len(STOPPED)) == sorted(STOPPED)
                await page.locator("#agent-filter").fill("thinking review")
                assert await wait_rows(page, 1) == ["reviewer"]
                await page.locator("#agent-filter").fill("nobody-here")
                await wait_rows(page, 0)
                await page.locator("#agents-list", has_text="no agent matches").wait_for()
                await page.locator("#agent-filter").press("Escape")
                assert await wait_rows(page, len(everyone)) == by_name
                await page.locator("#agent-filter").blur()
                await page.locator("#agent-sort").select_option("attention")
                got, named = await rows(page), await page.evaluate(NAMED)
                quiet = [n for n in by_name if n not in named]
                assert got[len(got) - len(quiet) :] == quiet, (got, named)
                await page.locator("#flow-term [data-message]").first.wait_for()
                await shots.take(page, "dashboard-40-agents", full_page=True)

                phone = await open_dashboard(b, hive, PHONE)
                await wait_rows(phone, len(everyone))
                row = phone.locator(f'[data-agent="{ASKER}"]')
                assert await row.locator(".status").is_visible()
                assert await row.locator('[data-action="menu"]').is_visible()
                assert not await row.locator('[data-action="stop"]').is_visible()
                assert not await row.locator(".page-link").is_visible()
                await row.locator('[data-action="menu"]').click()
                await row.locator('[data-action="stop"]').wait_for(state="visible")
                await row.locator(".page-link").wait_for(state="visible")
                await row.locator('[data-action="menu"]').click()
                width = await phone.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], width
                await shots.take(phone, "dashboard-40-agents-phone", full_page=True)
                assert problems(page) == [] and problems(phone) == []
        finally:
            hold.set()


FLOW_WINDOW = 200


async def flow_ids(page: Page) -> list[int]:
    ids: list[str] = await page.locator("#flow-term [data-message]").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-message'))"
    )
    return [int(i) for i in ids]


async def send_many(hive: Hive, count: int, start: int) -> list[int]:
    async with HiveClient(hive.host_sock) as op:
        return [
            (await op.call(rq.Send(cmd="send", to="alice", body=f"note {start + i}"), rs.Sent)).id
            for i in range(count)
        ]


async def test_the_flow_keeps_a_window_and_pages_older_and_newer_on_scroll(hive: Hive) -> None:
    hive.spawn_idle("alice")
    first = await send_many(hive, 450, 0)
    async with browser() as b:
        page = await open_dashboard(b, hive)
        pane = page.locator("#flow-term .terminal")
        await page.wait_for_function(
            "n => document.querySelectorAll('#flow-term [data-message]').length === n", arg=100
        )
        assert (await flow_ids(page))[-1] == first[-1]

        # New messages push the oldest out: never more than the window in the page.
        live = await send_many(hive, 150, 450)
        await page.locator(f'[data-message="{live[-1]}"]').wait_for()
        shown = await flow_ids(page)
        assert len(shown) == FLOW_WINDOW and shown[-1] == live[-1], (len(shown), shown[-1])

        # Scrolled to the top: an older page comes, the newest leave.
        for _ in range(3):
            oldest = shown[0]
            await pane.evaluate("p => { p.scrollTop = 0; p.dispatchEvent(new Event('scroll')); }")
            await page.wait_for_function(
                "o => +document.querySelector('#flow-term [data-message]')"
                ".getAttribute('data-message') < o",
                arg=oldest,
            )
            shown = await flow_ids(page)
            assert len(shown) == FLOW_WINDOW and shown == sorted(shown)
        assert shown == first[100:300]
        pill = page.locator("#flow-term .tail-pill")
        await pill.wait_for(state="visible")

        # A message sent meanwhile is counted, not added past the window's end.
        (late,) = await send_many(hive, 1, 600)
        await pill.filter(has_text="1 new").wait_for()
        assert late not in await flow_ids(page)

        # Scrolled down: newer pages come, the oldest leave.
        newest = shown[-1]
        await pane.evaluate(
            "p => { p.scrollTop = p.scrollHeight; p.dispatchEvent(new Event('scroll')); }"
        )
        await page.wait_for_function(
            "n => { const r = document.querySelectorAll('#flow-term [data-message]');"
            " return +r[r.length - 1].getAttribute('data-message') > n; }",
            arg=newest,
        )
        assert len(await flow_ids(page)) <= FLOW_WINDOW

        # The pill jumps to the newest, the late one included, and the window follows again.
        await pill.click()
        await page.locator(f'[data-message="{late}"]').wait_for()
        await pill.wait_for(state="hidden")
        (after,) = await send_many(hive, 1, 601)
        await page.locator(f'[data-message="{after}"]').wait_for()
        shown = await flow_ids(page)
        assert shown[-2:] == [late, after] and len(shown) <= FLOW_WINDOW
        assert problems(page) == []
