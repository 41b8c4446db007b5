"""The dashboard in a real browser, against a real hive with real agents and the real claude
CLI on the scripted fake API: the operator's day, start to end."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.browser import PHONE, Shots, browser, open_dashboard, problems
from tests.e2e.hive import Hive, running_hive
from tests.e2e.test_deploys import _commit, _propose
from tests.e2e.turns import hive_with
from tests.fake_anthropic import Reply, Seen, text, tool_use


def greeter(seen: Seen) -> Reply:
    """alice answers a greeting to the operator; everyone else just acknowledges."""
    if seen.last_tool_results():
        return text("done")
    if seen.agent() == "alice" and "hello alice" in seen.last_user_text():
        return tool_use("mcp__hyperhive__send", {"to": "operator", "body": "hi operator"})
    return text("ok")


async def _click_twice(page: Page, selector: str) -> None:
    """A destructive button asks once ("sure?"); the second click acts."""
    button = page.locator(selector)
    await button.click()
    await page.locator(selector, has_text="sure?").wait_for()
    await button.click()


async def test_the_operators_day_on_the_dashboard(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    with hive_with(greeter) as (hive, _fake):
        async with browser() as b:
            page = await open_dashboard(b, hive)

            # An agent spawned from the shell appears without a reload.
            assert hive.cli("spawn", "alice").returncode == 0
            await page.locator('[data-agent="alice"][data-state="running"]').wait_for()

            # The manager asks to spawn bob; the operator approves it on the page.
            async with HiveClient(hive.manager_sock) as manager:
                await manager.call(
                    rq.RequestSpawn(cmd="request_spawn", name="bob"), rs.ApprovalResult
                )
            card = page.locator("[data-approval]", has_text="bob")
            await card.locator('[data-action="approve"]').click()
            await page.locator('[data-agent="bob"][data-state="running"]').wait_for()
            await card.wait_for(state="detached")

            # A config change with its diff.
            toml = hive.state_dir / "agents" / "bob" / "proposed" / "agent.toml"
            edited = toml.read_text().replace('# model = "sonnet"', 'model = "claude-dash-1"')
            sha = _commit(hive, "bob", edited)
            approval = await _propose(hive, "bob", sha)
            card = page.locator(f'[data-approval="{approval.id}"]')
            await card.locator('text=+model = "claude-dash-1"').wait_for()
            await shots.take(page, "dashboard-approval")
            await card.locator('[data-action="approve"]').click()
            await card.wait_for(state="detached")
            await page.locator('[data-agent="bob"]', has_text=sha[:12]).wait_for()

            # A question from alice, answered with one of its options.
            async with HiveClient(hive.agent_sock("alice")) as alice:
                asked = await alice.call(
                    rq.Ask(cmd="ask", question="ship the release today?", options=["yes", "later"],
                           ttl_seconds=3600),
                    rs.QuestionResult,
                )  # fmt: skip
            question = page.locator(f'[data-question="{asked.question.id}"]')
            await question.wait_for()
            await shots.take(page, "dashboard-question")
            await question.locator('[data-action="answer-option"]', has_text="yes").click()
            await question.wait_for(state="detached")
            async with HiveClient(hive.host_sock) as host:
                left = await host.call(rq.Questions(cmd="questions"), rs.QuestionsResult)
            assert left.questions == []

            # @alice from the compose line: queued → delivered, and her reply arrives.
            await page.locator("#compose-input").fill("@alice hello alice")
            await page.locator("#compose-input").press("Enter")
            sent = page.locator("[data-message]", has_text="hello alice")
            await sent.wait_for()
            await page.locator(
                '[data-message][data-state="delivered"]', has_text="hello alice"
            ).wait_for()
            await page.locator("#inbox-list", has_text="hi operator").wait_for()
            await shots.take(page, "dashboard")

            # Follow alice's log.
            await page.locator("#log-agent").select_option("alice")
            await page.locator("#log-follow").check()
            await page.locator("#log-term", has_text="alice").wait_for()

            # Kill alice: her chip changes.
            await _click_twice(page, '[data-agent="alice"] [data-action="kill"]')
            await page.locator('[data-agent="alice"][data-state="stopped"]').wait_for()

            # Destroy bob, then purge his tombstone.
            await _click_twice(page, '[data-agent="bob"] [data-action="destroy"]')
            tomb = page.locator('#tombstones-list [data-agent="bob"]')
            await tomb.wait_for()
            await _click_twice(page, '#tombstones-list [data-agent="bob"] [data-action="purge"]')
            await tomb.wait_for(state="detached")
            await shots.take(page, "dashboard-full", full_page=True)

            phone = await open_dashboard(b, hive, PHONE)
            await phone.locator('[data-agent="alice"]').wait_for()
            await shots.take(phone, "dashboard-phone", full_page=True)

            assert problems(page) == [] and problems(phone) == []


@pytest.fixture
def fixed_port_hive() -> Iterator[Hive]:
    """A daemon whose dashboard keeps its port across restarts, as a real one does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running_hive({"HIVE_DASHBOARD_PORT": str(port)}) as h:
        yield h


async def test_reconnects_at_any_point_lose_and_duplicate_nothing(fixed_port_hive: Hive) -> None:
    hive = fixed_port_hive
    hive.spawn_idle("alice")
    rng = random.Random(7)
    sent: list[int] = []

    async def send(count: int) -> None:
        async with HiveClient(hive.host_sock) as host:
            for _ in range(count):
                got = await host.call(
                    rq.Send(cmd="send", to="alice", body=f"note {len(sent)}"), rs.Sent
                )
                sent.append(got.id)

    async with browser() as b:
        page = await open_dashboard(b, hive)
        for _ in range(3):
            await send(rng.randint(1, 15))
            hive.stop()  # the daemon goes away mid-stream: the page notices
            await page.locator("#conn", has_text="reconnecting").wait_for()
            await send_while_down(hive)
            hive.start()
            await page.locator("#conn", has_text="live").wait_for()
            await send(rng.randint(1, 15))
        last = sent[-1]
        await page.locator(f'[data-message="{last}"]').wait_for()
        shown = await page.locator("#flow-term [data-message]").evaluate_all(
            "rows => rows.map(r => Number(r.getAttribute('data-message')))"
        )
        mine = [i for i in shown if i in set(sent)]
        assert mine == sent, "every message once, in order"
        assert problems(page) == []


async def send_while_down(hive: Hive) -> None:
    """Nothing can be sent while hive-core is down; the CLI says so and nothing is lost."""
    refused = hive.cli("send", "alice", "while down")
    assert refused.returncode != 0


HOSTILE = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    "</script><script>window.__pwned=3</script>",
    "javascript:window.__pwned=4",
    '<a href="javascript:window.__pwned=5">click me</a>',
    '" onmouseover="window.__pwned=6" x="',
    "right-to-left \u202eevil\u202c and a zero\u200bwidth space",
]


async def test_hostile_text_is_shown_as_text_on_cold_load_live_and_in_backfill(
    hive: Hive,
) -> None:
    hive.spawn_idle("alice")
    hostile = " | ".join(HOSTILE)
    await _inject(hive, hostile, "cold")
    async with HiveClient(hive.host_sock) as host:  # push the cold message out of the snapshot
        for i in range(110):
            await host.call(rq.Send(cmd="send", to="alice", body=f"filler {i}"), rs.Sent)
    async with browser() as b:
        page = await open_dashboard(b, hive)
        await _inject(hive, hostile, "live")
        await page.locator("[data-message]", has_text="live: <img src=x").wait_for()
        await page.locator("[data-question]", has_text="live question <img src=x").wait_for()
        await page.locator('[data-agent="alice"]', has_text="status <img").wait_for()
        pane = page.locator("#flow-term .terminal")
        for _ in range(5):  # scroll to the top until the backfill reaches the cold message
            await pane.evaluate("p => { p.scrollTop = 0; p.dispatchEvent(new Event('scroll')); }")
            found = page.locator("[data-message]", has_text="cold: <img src=x")
            if await found.count():
                break
            await page.locator("#flow-term .terminal-loading").wait_for(state="hidden")
        await page.locator("[data-message]", has_text="cold: <img src=x").wait_for()
        cold = page.locator("[data-approval]", has_text="⚠ this diff holds")
        await cold.wait_for()
        cold_id = await cold.get_attribute("data-approval")
        denied = hive.cli("deny", str(cold_id), "--reason", f"reason {hostile}")
        assert denied.returncode == 0, denied.stderr
        await page.locator(".toast", has_text="reason <img src=x").wait_for()
        await cold.wait_for(state="detached")
        sha = _commit(hive, "bob", f'# live {hostile}\nmodel = "y"\n')
        await _propose(hive, "bob", sha)
        await page.locator("[data-approval]", has_text="# live <img src=x").wait_for()
        await page.locator("#log-agent").select_option("alice")
        await page.locator("#log-term", has_text="log <img src=x").wait_for()
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("img, iframe, a[href^='javascript']").count() == 0
        scripts = await page.locator("script").evaluate_all("s => s.map(e => e.src)")
        assert all(src.endswith("/assets/app.js") for src in scripts), scripts
        assert "\u202e" not in await page.locator("#flow-term").inner_text()
        assert problems(page) == []


async def _inject(hive: Hive, hostile: str, when: str) -> None:
    """Hostile text in a message, a question, a status, a diff and a log line."""
    async with HiveClient(hive.host_sock) as host:
        await host.call(rq.Send(cmd="send", to="alice", body=f"{when}: {hostile}"), rs.Sent)
    async with HiveClient(hive.agent_sock("alice")) as alice:
        await alice.call(
            rq.Ask(cmd="ask", question=f"{when} question {hostile}", options=HOSTILE[:3]),
            rs.QuestionResult,
        )
        await alice.call(rq.SetStatus(cmd="set_status", status=f"status {hostile}"[:200]), rs.Done)
    log = hive.state_dir / "agents" / "alice" / "harness.log"
    with log.open("a") as f:
        f.write(f"log {hostile}\n")
    if when == "cold":
        async with HiveClient(hive.manager_sock) as manager:
            await manager.call(
                rq.RequestInitConfig(cmd="request_init_config", name="bob"), rs.ConfigRepos
            )
        sha = _commit(hive, "bob", f'# {hostile}\nmodel = "x"\n')
        await _propose(hive, "bob", sha)
