"""An agent's own page over HTTP: its one-time link, its own cookie, its reads and controls."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.e2e.dashboard import ACT_HEADERS, dashboard_port, session
from tests.e2e.hive import Hive


def page_link(hive: Hive, name: str) -> str:
    got = hive.cli("login-link", name)
    assert got.returncode == 0, got.stderr
    match = re.search(r"http://127\.0\.0\.1:\d+/login\?code=[\w-]+", got.stdout)
    assert match is not None, got.stdout
    return match.group(0)


@asynccontextmanager
async def agent_session(hive: Hive, name: str) -> AsyncIterator[httpx.AsyncClient]:
    link = page_link(hive, name)
    base = link.split("/login")[0]
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        got = await client.get(link.removeprefix(base))
        assert got.status_code == 303 and got.headers["location"] == "/", got.text
        assert f"hive_agent_{name}" in client.cookies
        yield client


async def test_the_page_opens_with_its_link_and_shows_and_steers_the_agent(hive: Hive) -> None:
    for name in ("alice", "bob"):
        assert hive.cli("spawn", name).returncode == 0
    async with agent_session(hive, "alice") as alice:
        state = (await alice.get("/api/state")).json()
        assert (state["agent"], state["role"], state["turn_state"]) == ("alice", "agent", "idle")
        assert "sonnet" in state["models"] and state["dashboard_url"].startswith("http://")
        history = (await alice.get("/events/history?limit=5")).json()
        assert isinstance(history["events"], list) and isinstance(history["more"], bool)

        async with alice.stream("GET", "/events/stream") as stream:
            assert stream.status_code == 200
            changed = await alice.post(
                "/api/model", content=json.dumps({"model": "claude-page-1"}), headers=ACT_HEADERS
            )
            assert changed.status_code == 200 and "claude-page-1" in changed.json()["detail"]
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    frame = json.loads(line[5:])
                    assert frame["event"] == {"kind": "model_changed", "model": "claude-page-1"}
                    break
        assert (await alice.get("/api/state")).json()["model"] == "claude-page-1"
        for action in ("compact", "new-session", "cancel"):
            got = await alice.post(f"/api/{action}", content="{}", headers=ACT_HEADERS)
            assert got.status_code == 200 and got.json()["ok"] is True, (action, got.text)
        bad = await alice.post("/api/model", content='{"model": "no spaces"}', headers=ACT_HEADERS)
        assert bad.status_code == 400

        # Its cookie opens nothing else: not bob's page, not the dashboard.
        cookie = {"Cookie": f"hive_agent_alice={alice.cookies['hive_agent_alice']}"}
        bob_base = page_link(hive, "bob").split("/login")[0]
        async with httpx.AsyncClient(base_url=bob_base, timeout=30) as other:
            assert (await other.get("/api/state", headers=cookie)).status_code == 401
        dash = f"http://127.0.0.1:{dashboard_port(hive)}"
        async with httpx.AsyncClient(base_url=dash, timeout=30) as other:
            assert (await other.get("/api/state", headers=cookie)).status_code == 401


async def test_the_page_refuses_foreign_requests_and_other_pages_cookies(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    link = page_link(hive, "alice")
    base = link.split("/login")[0]
    port = int(base.rsplit(":", 1)[1])
    async with session(hive) as dashboard:  # the dashboard's cookie, for the same host
        dash_cookie = {"Cookie": f"hive_session={dashboard.cookies['hive_session']}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as anonymous:
        for path in ("/", "/api/state", "/events/history", "/events/stream"):
            assert (await anonymous.get(path)).status_code == 401, path
            assert (await anonymous.get(path, headers=dash_cookie)).status_code == 401, path
        assert (await anonymous.get("/api/state", headers={"Host": "evil.test"})).status_code == 421
        assert (await anonymous.get(link.removeprefix(base))).status_code == 303
        assert (await anonymous.get(link.removeprefix(base))).status_code == 403  # used once
        for headers, body in [
            ({"Content-Type": "application/json"}, "{}"),
            ({"X-Hive-Request": "1", "Content-Type": "text/plain"}, "{}"),
            ({**ACT_HEADERS, "Origin": "http://evil.test"}, "{}"),
            ({**ACT_HEADERS, "Origin": f"http://127.0.0.1:{port + 1}"}, "{}"),
            ({**ACT_HEADERS, "Sec-Fetch-Site": "same-site"}, "{}"),
        ]:
            got = await anonymous.post("/api/new-session", content=body, headers=headers)
            assert got.status_code == 403, headers
    refused = hive.cli("login-link", "zed")
    assert refused.returncode == 1 and "no agent named 'zed'" in refused.stderr
    assert hive.cli("stop", "alice").returncode == 0
    stopped = hive.cli("login-link", "alice")
    assert stopped.returncode == 1 and "alice is not running" in stopped.stderr
