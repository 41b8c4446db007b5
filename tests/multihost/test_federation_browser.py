"""A hive across hosts in Chromium: each host's dashboard groups the agents by host, shows
its NATS link and the others' last heartbeat, links another host's agent to that host's
dashboard and runs its lifecycle buttons there, and shows every host's approvals, decided on
the host holding them, once; on a phone too."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.browser import PHONE, Shots, browser, open_dashboard, problems
from tests.multihost.hives import HOSTS, Hosts, change, deployed, hosts_of
from tests.multihost.nats_cluster import NatsCluster


@pytest.fixture
def hosts(nats_cluster: NatsCluster) -> Iterator[Hosts]:
    with hosts_of(nats_cluster, ("a", "b")) as joined:
        joined.spawn_idle("a", "ada")
        joined.spawn_idle("b", "bea")
        joined.settled(3)
        yield joined


async def test_the_dashboard_groups_agents_by_host(hosts: Hosts, tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    async with browser() as b:
        page = await open_dashboard(b, hosts["a"])
        heads = page.locator("#agents-list .host-head")
        await heads.nth(1).wait_for()
        assert await heads.evaluate_all("hs => hs.map(h => h.dataset.host)") == ["a", "b"]
        mine = page.locator('#agents-list .host-head[data-host="a"]')
        assert "this host" in await mine.inner_text()
        await mine.get_by_text("NATS up").wait_for()
        other = page.locator('#agents-list .host-head[data-host="b"]')
        await other.get_by_text("seen").wait_for()
        assert await other.locator("a.link").get_attribute("href") == dashboard_url(hosts, "b")
        remote = page.locator('[data-agent="bea"]')
        assert await remote.get_attribute("data-host") == "b"
        await remote.get_by_text("on b", exact=True).wait_for()
        assert await remote.locator('[data-action="open-host"]').count() == 1
        await remote.locator('[data-action="start"]').click()  # run on b, through a
        await remote.get_by_text("running", exact=True).wait_for()  # b's entry, live
        assert "bea" in hosts.running_agents("b")
        local = page.locator('[data-agent="ada"]')
        assert await local.locator('[data-action="start"]').count() == 1
        await page.fill("#agent-filter", "b")  # the filter finds agents by host too
        assert await page.locator('[data-agent="bea"]').is_visible()
        assert not await page.locator('[data-agent="ada"]').is_visible()
        await page.fill("#agent-filter", "")
        async with HiveClient(hosts["b"].agent_sock("bea")) as bea:  # b's operator inbox
            await bea.call(rq.Send(cmd="send", to="operator", body="done on b"), rs.Sent)
        told = page.locator('#inbox-list [data-inbox^="b/"]', has_text="done on b")
        await told.get_by_text("on b", exact=True).wait_for()
        needs = page.locator('[data-attention="inbox:b"]')
        await needs.get_by_text("1 unread message to the operator on b").wait_for()
        await page.mouse.move(0, 0)  # no button left hovered where start was clicked
        await shots.take(page, "dashboard-hosts")
        await remote.locator('[data-action="page"]').wait_for()  # its page: a link made on b
        await remote.locator('[data-action="config"]').click()  # b's deployed config, read there
        await remote.locator(".config-panel", has_text="agent.toml").wait_for()
        await remote.locator('[data-action="log"]').click()  # b's harness log, read there
        await page.locator("#log-term", has_text="bea").wait_for()
        await page.locator("#log-follow").check()  # and followed there
        await page.locator("#log-status", has_text="following").wait_for()
        phone = await open_dashboard(b, hosts["a"], viewport=PHONE)
        row = phone.locator('[data-agent="bea"]')
        await row.wait_for()
        await row.scroll_into_view_if_needed()  # the other host's head and its agent
        stop = row.locator('[data-action="stop"]')
        assert not await stop.is_visible()  # folded on a phone, as this host's rows are
        await row.locator('[data-action="menu"]').click()
        assert await stop.is_visible()
        box = await row.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"]
        await shots.take(phone, "dashboard-hosts-phone")
        assert problems(page) == [] and problems(phone) == []


def dashboard_url(hosts: Hosts, host: str) -> str:
    port = (hosts[host].run_dir / "dashboard.port").read_text().strip()
    return f"http://127.0.0.1:{port}/"


async def test_another_hosts_approval_is_approved_here_and_only_once(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    """The manager proposes a config change for b's agent; a's dashboard approves it and
    it deploys on b; c's click on the card it still shows is told it is done."""
    shots = Shots(tmp_path / "shots")
    with hosts_of(nats_cluster) as hosts:
        hosts.spawn_idle("b", "bea")
        hosts.settled(2)
        manager = next(h for h in HOSTS if "hm1nd" in hosts.local_agents(h))
        stopped = hosts[manager].cli("stop", "hm1nd")  # the test speaks as the manager
        assert stopped.returncode == 0, stopped.stderr
        async with HiveClient(hosts[manager].manager_sock) as hm1nd:
            init = rq.RequestInitConfig(cmd="request_init_config", name="bea")
            proposed = Path((await hm1nd.call(init, rs.ConfigRepos)).proposed)
            commit = change(proposed, 'model = "claude-sonnet-4-5"\n')
            asked = rq.RequestApplyCommit(cmd="request_apply_commit", agent="bea", commit=commit)
            approval = (await hm1nd.call(asked, rs.ApprovalResult)).approval.id
        async with browser() as b:
            on_a = await open_dashboard(b, hosts["a"])
            on_c = await open_dashboard(b, hosts["c"])
            card_a = on_a.locator(f'[data-approval="b/{approval}"]')
            card_c = on_c.locator(f'[data-approval="b/{approval}"]')
            await card_a.get_by_text("on b", exact=True).wait_for()
            await card_c.get_by_text("on b", exact=True).wait_for()
            await card_a.get_by_text('+model = "claude-sonnet-4-5"').wait_for()  # its diff
            shared = deployed(hosts, "b", "bea")[:12]  # the row: the commit b shared
            await on_a.locator('[data-agent="bea"]').get_by_text(shared).wait_for()
            needs = on_a.locator(f'[data-attention="approval:b:{approval}"]')
            await needs.get_by_text(f"approval {approval} on b: deploy a config to bea").wait_for()
            await shots.take(on_a, "dashboard-approval-other-host")
            phone = await open_dashboard(b, hosts["a"], viewport=PHONE)
            on_phone = phone.locator(f'[data-approval="b/{approval}"]')
            await on_phone.scroll_into_view_if_needed()
            box = await on_phone.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"]
            await shots.take(phone, "dashboard-approval-other-host-phone")

            c = hosts["c"].proc
            assert c is not None
            os.kill(c.pid, signal.SIGSTOP)  # c hears nothing until after its click
            try:
                await card_a.locator('[data-action="approve"]').click()
                done = f"approved {approval}: deployed {commit[:12]} to bea"
                await on_a.locator(".toast", has_text=done).wait_for()
                await card_a.wait_for(state="detached")
                assert deployed(hosts, "b", "bea") == commit  # carried out on b
                await card_c.locator('[data-action="approve"]').click()  # still shown on c
            finally:
                os.kill(c.pid, signal.SIGCONT)
            told = f"approval {approval} is already approved"
            await on_c.locator(".toast", has_text=told).wait_for()
            await card_c.wait_for(state="detached")  # and c hears it ended
            assert problems(on_a) == [] and problems(on_c) == [] and problems(phone) == []
