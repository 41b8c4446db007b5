"""An agent's own page in a real browser: opened from the dashboard, a turn streaming in live,
the model picker, cancel, new session, the operator's send, compact; no polling; hostile text
(messages, replies, tool inputs and results) stays text."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser, Page

from tests.e2e.browser import WAIT_MS, Shots, browser, open_dashboard, problems
from tests.e2e.hive import Hive
from tests.e2e.turns import hive_with, operator_send, turn_rows, turns_done
from tests.fake_anthropic import Reply, Seen, text, tool_use

HOSTILE = (
    '<img src=x onerror="window.__pwned=1"> </script><script>window.__pwned=2</script> \u202eevil'
)

HOSTILE_NAME = "<img src=x onerror=window.__pwned=3>.txt"
"""A file name that is markup: it shows up in a tool call's input and in its result."""


def script(seen: Seen) -> Reply:
    if seen.is_compaction():
        return text("<analysis>a</analysis><summary>we talked</summary>")
    # The items only: a cancel notice at the top names earlier messages too.
    last = seen.last_user_text().partition("## Item ")[2]
    results = seen.last_tool_results()
    if "write the notes" in last and "which model" not in last:
        notes = json.loads(last.split("PATH=", 1)[1].split("\n", 1)[0])
        steps = sum(1 for m in seen.body["messages"] if m.get("role") == "assistant")
        if steps == 0:
            return tool_use("Write", {"file_path": notes, "content": "first line\nsecond line\n"})
        if steps == 1:
            edit = {"file_path": notes, "old_string": "second line", "new_string": "2nd line"}
            return tool_use("Edit", edit)
        return text("wrote the notes: two lines, as asked")
    if "wait for mail" in last:
        if results:
            return text("interrupted?")
        return tool_use("mcp__hyperhive__recv", {"wait_seconds": 170})
    if "which model" in last:
        if not results:  # hostile text in a tool's input (path, content) and its result
            path = json.loads(last.split("PATH=", 1)[1].split("\n", 1)[0])
            return tool_use("Write", {"file_path": path, "content": f"{HOSTILE}\n"})
        return text(f"this one, and a hostile line: {HOSTILE}")
    return text("ok")


async def open_agent_page(b: Browser, hive: Hive, name: str) -> Page:
    """Open the dashboard, click the agent's "page ↗", and return the page it opened."""
    dashboard = await open_dashboard(b, hive)
    button = dashboard.locator(f'[data-agent="{name}"] [data-action="page"]')
    async with dashboard.context.expect_page() as opened:
        await button.click()
    page = await opened.value
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: problems(dashboard).append(f"agent page error: {exc}"))
    page.on("dialog", lambda d: problems(dashboard).append(f"agent page dialog: {d.message}"))
    page.hive_problems = problems(dashboard)  # type: ignore[attr-defined]
    await page.wait_for_url("**/")
    await page.locator("#conn", has_text="live").wait_for()
    return page


async def test_watch_and_steer_an_agent_on_its_own_page(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    with hive_with(script) as (hive, fake):
        assert hive.cli("spawn", "alice").returncode == 0
        notes = hive.state_dir / "agents" / "alice" / "state" / "notes.txt"
        async with browser() as b:
            page = await open_agent_page(b, hive, "alice")

            # A turn streams in live: text, a tool call that expands, the Write as a diff.
            await operator_send(hive, "alice", f"write the notes PATH={json.dumps(str(notes))}")
            await page.locator('[data-kind="text"]', has_text="wrote the notes").wait_for()
            tool = page.locator("details[data-tool]").first
            await tool.locator("summary").first.click()
            await tool.locator("text=+first line").wait_for()
            edit = page.locator("details[data-tool]").nth(1)
            await edit.locator("summary").first.click()
            await edit.locator("text=-second line").wait_for()
            await edit.locator("text=+2nd line").wait_for()
            assert notes.read_text() == "first line\n2nd line\n"
            await page.locator("#badge-last", has_text="success").wait_for()
            await page.locator("#inbox-list [data-inbox]", has_text="write the notes").wait_for()
            await shots.take(page, "agent-page", full_page=True)

            # The model picker: the badge moves, the next request uses it.
            await page.locator("#badge-model").select_option("sonnet")
            await page.locator(".toast", has_text="model set to sonnet").wait_for()
            hostile_file = notes.parent / HOSTILE_NAME
            await operator_send(
                hive, "alice", f"which model? {HOSTILE} PATH={json.dumps(str(hostile_file))}"
            )
            await turns_done(hive, "alice", 2)
            assert "sonnet" in fake.requests_of("alice")[-1].body["model"]  # the CLI resolves it
            await page.locator('[data-kind="text"]', has_text="a hostile line: <img").wait_for()
            await page.locator("#inbox-list", has_text="which model? <img").wait_for()
            assert hostile_file.read_text() == f"{HOSTILE}\n"
            written = page.locator("details[data-tool]", has_text=HOSTILE_NAME).first
            await written.locator("summary").first.click()  # input and result, as text
            await written.locator("text=+<img src=x onerror").wait_for()
            assert await written.locator(f"text={HOSTILE_NAME}").count() >= 2

            # Cancel a turn in the middle of a slow tool call.
            await operator_send(hive, "alice", "wait for mail")
            await page.locator("#badge-state", has_text="tool").wait_for()
            await page.locator('[data-action="cancel"]').click()
            await page.locator('[data-kind="turn_ended"]', has_text="cancelled").wait_for()
            await turns_done(hive, "alice", 3)

            # New session drops --continue for one turn; compact runs before the next.
            await page.locator('[data-action="new-session"]').click()
            await page.locator(".toast", has_text="new session").wait_for()
            # The operator's message from this page goes through the dashboard.
            await page.locator("#send-input").fill("hello again")
            await page.locator("#send-input").press("Enter")
            await page.locator(".toast", has_text="sent").wait_for()
            assert await page.locator("#send-input").input_value() == ""
            await turns_done(hive, "alice", 4)
            await page.locator("#inbox-list", has_text="hello again").wait_for()
            assert turn_rows(hive, "alice")[-1]["new_session"] == 1
            await page.locator('[data-action="compact"]').click()
            await page.locator(".toast", has_text="compacted").wait_for()
            before = len(fake.requests_of("alice"))
            await operator_send(hive, "alice", "after compaction")
            await turns_done(hive, "alice", 5)
            assert fake.requests_of("alice")[before].is_compaction()

            # Nothing is fetched on a timer: neither this page nor the dashboard that opened
            # it (both open, both live) asks for anything in 10 idle seconds.
            requests: list[str] = []
            for watched in page.context.pages:
                watched.on("request", lambda r: requests.append(r.url))
            assert len(page.context.pages) == 2
            await page.wait_for_timeout(10_000)  # the observation window itself
            assert requests == []

            assert await page.evaluate("window.__pwned") is None
            assert await page.locator("img").count() == 0
            assert problems(page) == []
