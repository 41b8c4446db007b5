"""One-tap links from a real daemon's notification: opening the approve link (no login)
shows the confirm page and changes nothing, however often and however it is fetched; only
the page's own POST acts, once; a changed link and a POST without the page's header are
refused; a config deploy confirmed through its link; in Chromium, the page and its confirm
button."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import httpx

from tests.e2e.browser import PHONE, WAIT_MS, Shots, browser
from tests.e2e.dashboard import dashboard_port
from tests.e2e.hive import Hive, running_hive
from tests.e2e.test_deploys import _applied, _commit, _propose
from tests.git import git as _git
from tests.receivers import http_receiver

HEADERS = {"x-hive-request": "1", "Content-Type": "application/json"}


def pending(hive: Hive) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(hive.cli("pending", "--json").stdout)
    return rows


async def test_an_approve_link_confirms_then_acts_once() -> None:
    with http_receiver() as hook, running_hive({"HIVE_NOTIFY_URLS": hook.url()}) as hive:
        assert hive.cli("request-spawn", "carol").returncode == 0
        ((_, got),) = await anyio.to_thread.run_sync(hook.wait_for, 1)
        links = dict(re.findall(r"^(approve|deny): (\S+)$", got["message"], re.M))
        base = f"http://127.0.0.1:{dashboard_port(hive)}"
        assert links["approve"].startswith(f"{base}/act/")
        token = links["approve"].rsplit("/", 1)[1]
        async with httpx.AsyncClient(base_url=base, timeout=20) as web:
            for agent in ("Mozilla/5.0", "Slackbot-LinkExpanding 1.0", "curl/8"):
                page = await web.get(f"/act/{token}", headers={"User-Agent": agent})
                assert page.status_code == 200 and "approve approval 1?" in page.text
                assert (await web.head(f"/act/{token}")).status_code in (200, 405)
            assert [p["status"] for p in pending(hive)] == ["pending"]  # a GET never acts

            bare = await web.post(f"/api/act/{token}", content="{}")
            assert bare.status_code == 403  # no page header, no JSON body: not the page
            changed = await web.post(f"/api/act/{token[:-3]}AAA", headers=HEADERS, content="{}")
            assert changed.status_code == 403 and "changed" in changed.json()["error"]
            assert pending(hive)[0]["status"] == "pending"

            done = await web.post(f"/api/act/{token}", headers=HEADERS, content="{}")
            assert done.status_code == 200 and done.json()["ok"] is True, done.text
            again = await web.post(f"/api/act/{token}", headers=HEADERS, content="{}")
            assert again.status_code == 403 and "used" in again.json()["error"]
            page = await web.get(f"/act/{token}")
            assert page.status_code == 403 and "used already" in page.text
        assert pending(hive) == []
        listed = {a["name"] for a in json.loads(hive.cli("list", "--json").stdout)}
        assert "carol" in listed


async def test_in_chromium_opening_the_link_changes_nothing_until_confirm(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    with http_receiver() as hook, running_hive({"HIVE_NOTIFY_URLS": hook.url()}) as hive:
        assert hive.cli("request-spawn", "carol").returncode == 0
        ((_, got),) = await anyio.to_thread.run_sync(hook.wait_for, 1)
        url = dict(re.findall(r"^(approve|deny): (\S+)$", got["message"], re.M))["deny"]
        async with browser() as b:
            context = await b.new_context(viewport=PHONE)  # type: ignore[arg-type]
            page = await context.new_page()
            page.set_default_timeout(WAIT_MS)
            seen: list[str] = []
            page.on("pageerror", lambda exc: seen.append(f"page error: {exc}"))
            page.on(  # a missing favicon aside: the button below proves act.js loaded
                "console",
                lambda m: (
                    seen.append(m.text)
                    if m.type == "error" and "Failed to load resource" not in m.text
                    else None
                ),
            )
            await page.goto(url)
            await page.get_by_text("deny approval 1?").wait_for()
            await page.reload()  # opened again: still nothing done
            assert [p["status"] for p in pending(hive)] == ["pending"]
            await shots.take(page, "action-link-confirm")
            await page.locator("#confirm").click()
            await page.locator("#result.ok").wait_for()
            assert "denied" in (await page.locator("#result").inner_text())
            assert seen == []  # no script error, nothing the CSP refused
        assert pending(hive) == []


async def test_a_deploy_link_shows_the_diff_and_confirming_deploys() -> None:
    with http_receiver() as hook, running_hive({"HIVE_NOTIFY_URLS": hook.url()}) as hive:
        assert hive.cli("stop", "hm1nd").returncode == 0
        assert hive.cli("spawn", "bob").returncode == 0
        sha = _commit(hive, "bob", 'model = "claude-linked-1"\n')
        approval = await _propose(hive, "bob", sha)
        ((_, got),) = await anyio.to_thread.run_sync(hook.wait_for, 1)
        url = dict(re.findall(r"^(approve|deny): (\S+)$", got["message"], re.M))["approve"]
        token = url.rsplit("/", 1)[1]
        base = f"http://127.0.0.1:{dashboard_port(hive)}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as web:
            page = await web.get(f"/act/{token}")
            assert page.status_code == 200
            assert "+model = &quot;claude-linked-1&quot;" in page.text  # the diff, escaped
            done = await web.post(f"/api/act/{token}", headers=HEADERS, content="{}")
            assert done.status_code == 200, done.text
        assert _git(_applied(hive, "bob"), "rev-parse", "main") == sha
        shown = json.loads(hive.cli("show", str(approval.id), "--json").stdout)
        assert shown["status"] == "approved"
