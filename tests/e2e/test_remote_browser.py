"""The hive from another machine, in Chromium: the dashboard and an agent's page reached by a
host name (mapped to loopback with `--host-resolver-rules`), and no credential of either
ever reaching another port of that host."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page

from hive_core.ports import loopback_listeners
from tests.e2e.browser import PHONE, WAIT_MS, Shots, browser, open_dashboard, problems
from tests.e2e.dashboard import dashboard_port, session
from tests.e2e.hive import Hive

REMOTE = "hive.test"
"""The host name the operator's browser uses; Chromium resolves it to 127.0.0.1."""
RESOLVE = "--host-resolver-rules=MAP *.test 127.0.0.1"
"""REMOTE, and any other name under .test (one the hive does not answer to)."""


@pytest.fixture
def remote_hive(idle_hive: Hive) -> Hive:
    """A hive that listens on every address and answers to REMOTE, as on a LAN."""
    idle_hive.extra_env.update(HIVE_DASHBOARD_HOST="0.0.0.0", HIVE_DASHBOARD_ALLOWED_HOSTS=REMOTE)
    idle_hive.start()
    assert idle_hive.cli("spawn", "alice").returncode == 0
    return idle_hive


def remote_login_link(hive: Hive) -> str:
    link = hive.cli("login-link").stdout.strip()
    assert link.startswith(f"http://{REMOTE}:{dashboard_port(hive)}/login?code="), link
    return link


def web_port(hive: Hive, name: str) -> int:
    agents = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    port = agents[name]["web_port"]
    assert isinstance(port, int)
    return port


async def open_page_from_dashboard(dashboard: Page, name: str) -> Page:
    """Click the agent's "page ↗" and return the live page it opened."""
    async with dashboard.context.expect_page() as opened:
        await dashboard.locator(f'[data-agent="{name}"] [data-action="page"]').click()
    page = await opened.value
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: problems(dashboard).append(f"agent page error: {exc}"))
    await page.wait_for_url(re.compile(r"/$"))
    await page.locator("#conn", has_text="live").wait_for()
    return page


async def test_from_another_machine_the_dashboard_opens_an_agents_live_page(
    remote_hive: Hive, tmp_path: Path
) -> None:
    shots = Shots(tmp_path / "shots")
    port = web_port(remote_hive, "alice")
    async with browser(RESOLVE) as b:
        dashboard = await open_dashboard(b, remote_hive, link=remote_login_link(remote_hive))
        assert dashboard.url == f"http://{REMOTE}:{dashboard_port(remote_hive)}/"
        await dashboard.locator('[data-agent="alice"]').wait_for()
        await shots.take(dashboard, "remote-dashboard")

        page = await open_page_from_dashboard(dashboard, "alice")
        assert page.url == f"http://{REMOTE}:{port}/", page.url
        assert loopback_listeners(port, "0.0.0.0"), "the page listens where the dashboard does"
        await page.locator("#agent-name", has_text="alice").wait_for()
        await page.locator("#send-form").wait_for()  # the send token came with the link
        await page.fill("#send-input", "hello from the laptop")
        await page.click("#send-button")
        await page.locator(".toast", has_text="sent to alice as message").wait_for()
        await shots.take(page, "remote-agent-page")

        # The back link goes to the dashboard on the name the page was reached by.
        back = await page.get_attribute("#dashboard-link", "href")
        assert back is not None and back.startswith(f"http://{REMOTE}:"), back
        assert problems(dashboard) == []
    async with session(remote_hive) as client:
        flow = (await client.get("/dashboard/history")).json()["messages"]
    sent = [m for m in flow if m["body"] == "hello from the laptop"]
    assert [(m["sender"], m["recipient"]) for m in sent] == [("operator", "alice")]


async def test_error_pages_say_what_to_do_in_a_browser(remote_hive: Hive, tmp_path: Path) -> None:
    shots = Shots(tmp_path / "shots")
    dash = f"http://{REMOTE}:{dashboard_port(remote_hive)}"
    alice = f"http://{REMOTE}:{web_port(remote_hive, 'alice')}"
    async with browser(RESOLVE) as b:
        context = await b.new_context(viewport=PHONE)  # type: ignore[arg-type]
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)

        used = remote_login_link(remote_hive)
        await page.goto(used)
        await page.wait_for_url(f"{dash}/")
        fresh = await context.new_page()  # no session in this origin's storage any more
        await page.evaluate("localStorage.clear()")
        await fresh.goto(used)
        await fresh.locator("#login-expired").wait_for()
        assert "hive-core login-link" in await fresh.inner_text("#login-expired")
        await shots.take(fresh, "login-expired")

        await fresh.goto(f"{alice}/")  # an agent page without a session goes to its login
        await fresh.wait_for_url(f"{alice}/login")
        needed = fresh.locator("#login-needed")
        await needed.wait_for()
        assert "page ↗" in await needed.inner_text()
        assert await needed.locator("a").get_attribute("href") == f"{dash}/"
        await shots.take(fresh, "agent-page-needs-link")

        wrong = await fresh.goto(f"http://wrong.test:{dashboard_port(remote_hive)}/")
        assert wrong is not None and wrong.status == 421
        assert "HIVE_DASHBOARD_ALLOWED_HOSTS" in await fresh.inner_text("main")
        await shots.take(fresh, "wrong-host")

        link = remote_hive.cli("login-link", "alice").stdout.strip()
        await fresh.goto(link.replace("127.0.0.1", REMOTE))
        await fresh.wait_for_url(f"{alice}/")
        await fresh.locator("#conn", has_text="live").wait_for()
        await fresh.goto(link.replace("127.0.0.1", REMOTE))  # used, but logged in: the page
        await fresh.wait_for_url(f"{alice}/")
        await fresh.locator("#conn", has_text="live").wait_for()


class StandIn:
    """A server on another port of the same host, recording everything it receives; its
    page reports what its origin's script can read (cookies, storage)."""

    PAGE = b"""<!doctype html><title>stand-in</title><script>
const seen = {cookie: document.cookie, local: Object.entries(localStorage),
              session: Object.entries(sessionStorage)};
fetch("/report", {method: "POST", body: JSON.stringify(seen)})
  .then(() => { document.title = "reported"; });
</script>"""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded.append((self.path, dict(self.headers.items()), body))

            def do_GET(self) -> None:
                self._record()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(StandIn.PAGE)

            def do_POST(self) -> None:
                self._record()
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def strings(self) -> set[str]:
        """Every word of every value it was sent: header values, the script's report."""
        found: set[str] = set()
        for _, headers, body in self.requests:
            for text in [*headers.values(), body.decode(errors="replace")]:
                found.update(w for w in re.split(r'[\s;,="\[\]{}:]+', text) if len(w) >= 16)
        return found


@contextmanager
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


async def test_nothing_a_server_on_another_port_receives_opens_the_dashboard_or_a_page(
    remote_hive: Hive,
) -> None:
    alice = f"http://127.0.0.1:{web_port(remote_hive, 'alice')}"
    with stand_in() as other:
        async with browser(RESOLVE) as b:
            dashboard = await open_dashboard(b, remote_hive, link=remote_login_link(remote_hive))
            page = await open_page_from_dashboard(dashboard, "alice")
            # Both are logged in: their tokens open their own APIs.
            for tab in (dashboard, page):
                status = await tab.evaluate(
                    """async () => (await fetch("/api/state", {headers: {Authorization:
                    `Bearer ${localStorage.getItem("hive.session")}`}})).status"""
                )
                assert status == 200
            for host in (REMOTE, "127.0.0.1"):
                visit = await dashboard.context.new_page()
                await visit.goto(f"http://{host}:{other.port}/")
                await visit.wait_for_function("document.title === 'reported'", timeout=WAIT_MS)
    paths = sorted(path for path, _, _ in other.requests if path != "/favicon.ico")
    assert paths == ["/", "/", "/report", "/report"], paths  # two pages, two reports
    for path, headers, _ in other.requests:
        names = {n.lower() for n in headers}
        assert not names & {"cookie", "authorization"}, (path, headers)
    reports = [json.loads(body) for path, _, body in other.requests if path == "/report"]
    assert reports == [{"cookie": "", "local": [], "session": []}] * 2
    candidates = other.strings()
    assert candidates, "the stand-in received nothing to try"
    async with httpx.AsyncClient(timeout=30) as client:
        for word in candidates:
            for base in (f"http://127.0.0.1:{dashboard_port(remote_hive)}", alice):
                for header in (
                    {"Authorization": f"Bearer {word}"},
                    {"Cookie": f"hive_session={word}; hive_agent_alice={word}"},
                ):
                    got = await client.get(f"{base}/api/state", headers=header)
                    assert got.status_code == 401, (base, word[:12])
