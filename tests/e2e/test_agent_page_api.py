"""An agent's own page over HTTP: its one-time link, its own session, its reads and controls."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.e2e.dashboard import ACT_HEADERS, dashboard_port, log_in, session, ticket
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
        await log_in(client, link)
        yield client


async def test_the_page_opens_with_its_link_and_shows_and_steers_the_agent(hive: Hive) -> None:
    for name in ("alice", "bob"):
        assert hive.cli("spawn", name).returncode == 0
    async with agent_session(hive, "alice") as alice:
        state = (await alice.get("/api/state")).json()
        assert (state["agent"], state["role"], state["turn_state"]) == ("alice", "agent", "idle")
        assert "sonnet" in state["models"] and state["dashboard_url"].startswith("http://")
        assert state["model_source"] == "default"
        history = (await alice.get("/events/history?limit=5")).json()
        assert isinstance(history["events"], list) and isinstance(history["more"], bool)

        assert (await alice.get("/events/stream")).status_code == 401  # the token alone
        params = {"ticket": await ticket(alice)}
        async with alice.stream("GET", "/events/stream", params=params) as stream:
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
        after = (await alice.get("/api/state")).json()
        assert (after["model"], after["model_source"]) == ("claude-page-1", "override")
        for action in ("compact", "new-session", "cancel"):
            got = await alice.post(f"/api/{action}", content="{}", headers=ACT_HEADERS)
            assert got.status_code == 200 and got.json()["ok"] is True, (action, got.text)
        bad = await alice.post("/api/model", content='{"model": "no spaces"}', headers=ACT_HEADERS)
        assert bad.status_code == 400

        # Its session opens nothing else: not bob's page, not the dashboard; nor does its
        # send token open anything but the send to alice.
        send_token = state["send_token"]
        assert send_token.startswith("s1.alice.")
        bob_base = page_link(hive, "bob").split("/login")[0]
        dash = f"http://127.0.0.1:{dashboard_port(hive)}"
        for credential in (alice.headers["Authorization"], f"Bearer {send_token}"):
            for base in (bob_base, dash):
                async with httpx.AsyncClient(base_url=base, timeout=30) as other:
                    got = await other.get("/api/state", headers={"Authorization": credential})
                    assert got.status_code == 401, (base, credential[:12])


async def test_the_pages_history_answers_a_bad_before_or_limit_with_a_400(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    async with agent_session(hive, "alice") as alice:
        for query in (
            "before=9223372036854775808", "before=" + "9" * 5000, "before=0",
            "before=abc", "before=", "limit=0", "limit=1001", "limit=abc", "limit=" + "9" * 30,
        ):  # fmt: skip
            bad = await alice.get(f"/events/history?{query}")
            assert bad.status_code == 400, (query, bad.text)
            assert bad.json()["code"] == "invalid_request", query
            assert bad.json()["error"].startswith(query.split("=")[0] + ": "), query
        edge = await alice.get("/events/history?before=9223372036854775807&limit=1000")
        assert edge.status_code == 200 and isinstance(edge.json()["events"], list)


async def test_the_page_refuses_foreign_requests_and_other_pages_cookies(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    link = page_link(hive, "alice")
    base = link.split("/login")[0]
    port = int(base.rsplit(":", 1)[1])
    async with session(hive) as dashboard:  # the dashboard's session, for the same host
        dash_token = {"Authorization": dashboard.headers["Authorization"]}
        dash_ticket = await ticket(dashboard)
    async with httpx.AsyncClient(base_url=base, timeout=30) as anonymous:
        for path in ("/api/state", "/events/history", "/events/stream", "/api/session"):
            assert (await anonymous.get(path)).status_code == 401, path
            assert (await anonymous.get(path, headers=dash_token)).status_code == 401, path
        stream = await anonymous.get("/events/stream", params={"ticket": dash_ticket})
        assert stream.status_code == 401  # another server's ticket
        assert (await anonymous.get("/api/state", headers={"Host": "evil.test"})).status_code == 421
        await log_in(anonymous, link)  # the controls below are refused for other reasons
        code = json.dumps({"code": link.partition("code=")[2]})
        used = await anonymous.post("/api/session", content=code, headers=ACT_HEADERS)
        assert used.status_code == 403 and "hive-core login-link alice" in used.text
        for headers, body in [
            ({"Content-Type": "application/json"}, "{}"),
            ({"X-Hive-Request": "1", "Content-Type": "text/plain"}, "{}"),
            ({**ACT_HEADERS, "Origin": "http://evil.test"}, "{}"),
            ({**ACT_HEADERS, "Origin": f"http://127.0.0.1:{port + 1}"}, "{}"),
            ({**ACT_HEADERS, "Sec-Fetch-Site": "same-site"}, "{}"),
        ]:
            got = await anonymous.post("/api/session", content=code, headers=headers)
            assert got.status_code == 403, (headers, got.text)
            got = await anonymous.post("/api/new-session", content=body, headers=headers)
            assert got.status_code == 403, headers
    refused = hive.cli("login-link", "zed")
    assert refused.returncode == 1 and "no agent named 'zed'" in refused.stderr
    assert hive.cli("stop", "alice").returncode == 0
    stopped = hive.cli("login-link", "alice")
    assert stopped.returncode == 1 and "alice is not running" in stopped.stderr


async def test_the_dashboard_takes_the_operators_send_from_that_agents_page_only(
    hive: Hive,
) -> None:
    for name in ("alice", "bob"):
        assert hive.cli("spawn", name).returncode == 0
    ports = {
        n: int(page_link(hive, n).split("/login")[0].rsplit(":", 1)[1]) for n in ("alice", "bob")
    }
    alice_page = f"http://127.0.0.1:{ports['alice']}"
    route = "/api/agents/alice/send"
    async with agent_session(hive, "alice") as alice:
        send_token = (await alice.get("/api/state")).json()["send_token"]
    async with agent_session(hive, "bob") as bob:
        bobs_token = (await bob.get("/api/state")).json()["send_token"]
    page_headers = {
        **ACT_HEADERS, "Origin": alice_page, "Sec-Fetch-Site": "same-site",
        "Authorization": f"Bearer {send_token}",
    }  # fmt: skip
    async with session(hive) as dashboard:
        preflight = await dashboard.options(
            route,
            headers={
                "Origin": alice_page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-hive-request",
            },
        )
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == alice_page
        assert "access-control-allow-credentials" not in preflight.headers  # no cookies
        allowed = preflight.headers["access-control-allow-headers"]
        assert "x-hive-request" in allowed and "authorization" in allowed
        for origin in (
            f"http://127.0.0.1:{ports['bob']}",  # another agent's page
            f"http://evil.test:{ports['alice']}",  # the right port on a host not ours
            f"http://127.0.0.1:{dashboard_port(hive)}",  # the dashboard itself
            "null",
        ):
            refused = await dashboard.options(route, headers={"Origin": origin})
            assert refused.status_code == 403, origin
            assert "access-control-allow-origin" not in refused.headers, origin
        assert (
            await dashboard.options("/api/agents/zed/send", headers={"Origin": alice_page})
        ).status_code == 403

        del dashboard.headers["Authorization"]  # the page holds its send token only
        sent = await dashboard.post(
            route, content='{"body": "from the page"}', headers=page_headers
        )
        assert sent.status_code == 200 and sent.json()["ok"] is True, sent.text
        assert sent.headers["access-control-allow-origin"] == alice_page
        # The send token opens nothing else: no other route, no other agent's send.
        send_auth = {"Authorization": f"Bearer {send_token}"}
        assert (await dashboard.get("/dashboard/history", headers=send_auth)).status_code == 401
        other = await dashboard.post(
            "/api/send", content='{"to": "alice", "body": "x"}',
            headers={**ACT_HEADERS, **send_auth},
        )  # fmt: skip
        assert other.status_code == 401
        bob_headers = {**page_headers, "Origin": f"http://127.0.0.1:{ports['bob']}"}
        bobs = await dashboard.post(
            "/api/agents/alice/send", content='{"body": "x"}',
            headers={**bob_headers, "Authorization": f"Bearer {bobs_token}"},
        )  # fmt: skip
        assert bobs.status_code == 403
        bobs = await dashboard.post(
            "/api/agents/alice/send", content='{"body": "x"}',
            headers={**page_headers, "Authorization": f"Bearer {bobs_token}"},
        )  # fmt: skip
        assert bobs.status_code == 401
        async with session(hive) as again:
            flow = (await again.get("/dashboard/history")).json()
        mine = [m for m in flow["messages"] if m["body"] == "from the page"]
        assert [(m["sender"], m["recipient"]) for m in mine] == [("operator", "alice")]

        for headers, body, status in [
            ({**page_headers, "Sec-Fetch-Site": "cross-site"}, '{"body": "x"}', 403),
            ({**page_headers, "Origin": f"http://127.0.0.1:{ports['bob']}"}, '{"body": "x"}', 403),
            ({**page_headers, "X-Hive-Request": "0"}, '{"body": "x"}', 403),
            ({**page_headers, "Content-Type": "text/plain"}, '{"body": "x"}', 403),
            (page_headers, '{"body": "x", "to": "bob"}', 400),  # the recipient is the route's
            (page_headers, '{"body": 3}', 400),
        ]:
            got = await dashboard.post(route, content=body, headers=headers)
            assert got.status_code == status, (headers, body, got.text)
    # Without a send token the page's origin alone does nothing.
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{dashboard_port(hive)}", timeout=30
    ) as anonymous:
        no_token = {k: v for k, v in page_headers.items() if k != "Authorization"}
        got = await anonymous.post(route, content='{"body": "x"}', headers=no_token)
        assert got.status_code == 401
        assert got.headers["access-control-allow-origin"] == alice_page  # the page reads why


BROWSER_ACCEPT = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_a_browser_without_a_session_or_on_a_foreign_host_gets_a_page_saying_what_to_do(
    hive: Hive,
) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    base = page_link(hive, "alice").split("/login")[0]
    port = int(base.rsplit(":", 1)[1])
    async with agent_session(hive, "alice") as alice:
        dashboard_url = (await alice.get("/api/state")).json()["dashboard_url"]
    assert dashboard_url.startswith(f"http://127.0.0.1:{dashboard_port(hive)}")
    async with httpx.AsyncClient(base_url=base, timeout=30) as anonymous:
        # `/` holds no data (its script goes to /login without a session); the login page
        # says how to get in, and links the dashboard on the host the page was reached by.
        page = await anonymous.get("/", headers=BROWSER_ACCEPT)
        assert page.status_code == 200 and "/assets/page.js" in page.text
        for accept in (BROWSER_ACCEPT, {}):  # a page whatever it accepts
            got = await anonymous.get("/login", headers=accept)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"].startswith("text/html")
            assert "this page needs a one-time link" in got.text
            assert "this link was used or has expired" in got.text
            assert "<strong>page ↗</strong>" in got.text
            assert "<code>hive-core login-link alice</code>" in got.text
            assert f'<a href="{dashboard_url}">open the dashboard</a>' in got.text
            assert "/assets/front/login.js" in got.text
        for path in ("/api/state", "/events/history", "/events/stream"):
            api = await anonymous.get(path, headers=BROWSER_ACCEPT)
            assert api.status_code == 401, path
            assert api.json()["code"] == "forbidden", path

        foreign = await anonymous.get("/", headers={**BROWSER_ACCEPT, "Host": "evil<i>.test"})
        assert foreign.status_code == 421
        assert foreign.headers["content-type"].startswith("text/html")
        assert "<code>evil&lt;i&gt;.test</code>" in foreign.text and "<i>" not in foreign.text
        assert f"<code>127.0.0.1:{port}</code>" in foreign.text
        assert "<code>HIVE_DASHBOARD_ALLOWED_HOSTS</code>" in foreign.text
        for path in ("/api/state", "/events/stream"):
            api = await anonymous.get(path, headers={**BROWSER_ACCEPT, "Host": "evil.test"})
            assert api.status_code == 421, path
            assert api.json() == {"error": "unexpected Host header"}, path
