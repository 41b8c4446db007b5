"""The attention list against a real daemon: the CLI's exit codes and JSON, the manager's
view without the operator's inbox, and the dashboard's first panel, live, in Chromium."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.names import OPERATOR
from tests.e2e.browser import WAIT_MS, Shots, browser, open_dashboard, problems
from tests.e2e.hive import Hive
from tests.e2e.turns import hive_with
from tests.fake_anthropic import Reply, Seen, text


def quiet(seen: Seen) -> Reply:
    return text("ok")


def attention(hive: Hive) -> tuple[int, list[dict[str, object]]]:
    got = hive.cli("attention", "--json")
    assert got.returncode in (0, 1), got.stderr
    items: list[dict[str, object]] = json.loads(got.stdout)
    return got.returncode, items


async def test_the_cli_prints_the_list_and_exits_1_while_it_is_not_empty() -> None:
    with hive_with(quiet) as (hive, _):
        assert attention(hive) == (0, [])
        plain = hive.cli("attention")
        assert (plain.returncode, plain.stdout.strip()) == (0, "nothing needs attention")

        before = time.time()
        assert hive.cli("request-spawn", "carol").returncode == 0
        code, items = attention(hive)
        assert code == 1
        (item,) = items
        assert {k: item[k] for k in ("kind", "agent", "severity", "ref")} == {
            "kind": "approval", "agent": "carol", "severity": "warn", "ref": item["ref"],
        }  # fmt: skip
        assert before - 1 <= float(item["since"]) <= time.time()  # type: ignore[arg-type]
        assert f"hive-core approve {item['ref']}" in str(item["action"])
        table = hive.cli("attention")
        assert table.returncode == 1 and "approval" in table.stdout and "carol" in table.stdout

        assert hive.cli("deny", str(item["ref"])).returncode == 0
        assert attention(hive) == (0, [])


async def test_the_manager_sees_the_list_without_the_operators_inbox() -> None:
    with hive_with(quiet) as (hive, _):
        async with hive.client(hive.manager_sock) as mgr:
            await mgr.call(rq.Send(cmd="send", to=OPERATOR, body="for your eyes"), rs.Sent)
            assert hive.cli("request-spawn", "carol").returncode == 0
            _, items = attention(hive)
            assert sorted(str(i["kind"]) for i in items) == ["approval", "operator_message"]
            mine = await mgr.call(rq.Attention(cmd="attention"), rs.AttentionList)
            assert [i.kind for i in mine.items] == ["approval"]
        async with hive.client() as host:
            await host.call(rq.Inbox(cmd="inbox", limit=10, wait_seconds=0), rs.Messages)
        assert [i["kind"] for i in attention(hive)[1]] == ["approval"]  # read: it left


async def test_the_dashboard_puts_the_list_first_live_and_acts_on_it(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    with hive_with(quiet) as (hive, _):
        async with browser() as b:
            page = await open_dashboard(b, hive)
            panel = page.locator("#attention")
            await panel.locator(".empty", has_text="nothing needs you").wait_for()
            assert await page.title() == "hyperhive"
            # The list is the first panel of the page.
            first = await page.evaluate("document.querySelector('main').firstElementChild.id")
            assert first == "attention"

            assert hive.cli("request-spawn", "carol").returncode == 0
            item = panel.locator('[data-kind="approval"]')
            await item.wait_for()  # live, without a reload
            await page.wait_for_function("document.title === '(1) hyperhive'", timeout=WAIT_MS)
            assert await page.locator("#pending").text_content() == "1 needs you"
            assert "spawn carol" in (await item.inner_text())
            await shots.take(page, "dashboard-attention")

            approve = item.locator('[data-action="approve"]')
            await approve.click()
            await approve.click()  # "sure?"
            await item.wait_for(state="detached")
            await panel.locator(".empty", has_text="nothing needs you").wait_for()
            await page.wait_for_function("document.title === 'hyperhive'", timeout=WAIT_MS)
            assert problems(page) == []
        listed = {a["name"] for a in json.loads(hive.cli("list", "--json").stdout)}
        assert "carol" in listed
