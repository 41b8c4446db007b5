"""`hive-core login NAME`: the harness relays `claude auth login` to the operator's terminal,
against a stand-in `claude` that behaves like the real one (a URL, a prompt without a
newline, a code on stdin, a credentials file), and hive-core hears the agent logged in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from tests.e2e.browser import DESKTOP, WAIT_MS, Shots, browser
from tests.e2e.hive import Hive, running_hive, short_tmp
from tests.e2e.test_helper_events import manager_inbox

STAND_IN = """#!{python}
import json, os, sys
creds = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], ".credentials.json")
if sys.argv[1:] == ["auth", "status"]:
    ok = os.path.exists(creds)
    print(json.dumps({{"loggedIn": ok}}))
    sys.exit(0 if ok else 1)
if sys.argv[1:] == ["auth", "login"]:
    print("Opening browser to sign in...")
    print("If the browser didn't open, visit: https://claude.example/oauth/authorize?state=s1")
    sys.stdout.write("Paste code here if prompted > ")
    sys.stdout.flush()
    code = sys.stdin.readline().strip()
    if code != "good-code":
        print("\\nOAuth error: invalid code")
        sys.exit(1)
    os.makedirs(os.path.dirname(creds), exist_ok=True)
    with open(creds, "w") as f:
        json.dump({{"token": "secret"}}, f)
    print("\\nLogin successful.")
    sys.exit(0)
sys.exit(2)
"""


@pytest.fixture
def logged_out(tmp_path: Path) -> Iterator[Hive]:
    """A hive whose claude is the stand-in, alice spawned and known to need a login, the
    manager stopped so its inbox can be read."""
    fake = tmp_path / "claude"
    fake.write_text(STAND_IN.format(python=sys.executable))
    fake.chmod(0o755)
    with running_hive({"HIVE_CLAUDE_BIN": str(fake)}) as hive:
        assert hive.cli("stop", "hm1nd").returncode == 0
        assert hive.cli("spawn", "alice").returncode == 0
        yield hive


async def _needs_login(hive: Hive) -> None:
    async with hive.client(hive.agent_sock("alice")) as alice:  # as its harness reports it
        await alice.call(
            rq.LoginState(cmd="login_state", state="needs_login", detail="401"), rs.Done
        )


def _login(hive: Hive, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hive_core", "login", "alice"],
        env=hive.env, input=f"{code}\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _login_state(hive: Hive) -> str:
    rows = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    return str(rows["alice"]["login"])


async def test_login_relays_the_cli_and_hive_core_hears_it_worked(logged_out: Hive) -> None:
    hive = logged_out
    await _needs_login(hive)
    assert _login_state(hive) == "needs_login"

    done = _login(hive, "good-code")

    assert done.returncode == 0, done.stderr
    assert "https://claude.example/oauth/authorize?state=s1" in done.stdout
    assert "Paste code here if prompted >" in done.stdout and "Login successful." in done.stdout
    assert done.stdout.rstrip().endswith("alice is logged in")
    assert "good-code" not in done.stdout
    assert _login_state(hive) == "logged_in"
    async with hive.client(hive.manager_sock) as manager:
        got = await manager.call(rq.Recv(cmd="recv", wait_seconds=5), rs.Messages)
    assert any(
        isinstance(m.event, helper.LoggedIn) and m.event.agent == "alice" for m in got.messages
    )
    log = (hive.state_dir / "agents" / "alice" / "harness.log").read_text()
    assert "good-code" not in log and "secret" not in log


async def test_a_wrong_code_fails_the_login_and_changes_nothing(logged_out: Hive) -> None:
    hive = logged_out
    await _needs_login(hive)

    failed = _login(hive, "bad-code")

    assert failed.returncode == 1
    assert "OAuth error: invalid code" in failed.stdout
    assert "alice is not logged in: the login failed" in failed.stderr
    assert _login_state(hive) == "needs_login"
    assert not (
        hive.state_dir / "agents" / "alice" / "state" / ".claude" / ".credentials.json"
    ).exists()


async def test_the_agent_page_logs_the_agent_in(logged_out: Hive, tmp_path: Path) -> None:
    hive = logged_out
    shots = Shots(tmp_path / "shots")
    link = hive.cli("login-link", "alice")
    assert link.returncode == 0, link.stderr
    async with browser() as b:
        page = await (await b.new_context(viewport=DESKTOP)).new_page()  # type: ignore[arg-type]
        page.set_default_timeout(WAIT_MS)
        await page.goto(link.stdout.strip())
        panel = page.locator("#login")
        await panel.wait_for()  # the harness probed: not logged in
        await page.locator("#login-start").click()
        await page.locator(
            "#login-url", has_text="https://claude.example/oauth/authorize"
        ).wait_for()
        await page.locator("#login-output", has_text="Paste code here if prompted >").wait_for()
        await shots.take(page, "agent-page-login")
        await page.locator("#login-code").fill("good-code")
        await page.locator("#login-code-send").click()
        await panel.wait_for(state="hidden")
        assert "good-code" not in await page.content()
    assert _login_state(hive) == "logged_in"


SECOND_WITHOUT_URL = """#!{python}
import json, os, sys
creds = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], ".credentials.json")
runs = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], "login-runs")
if sys.argv[1:] == ["auth", "status"]:
    print(json.dumps({{"loggedIn": False}}))
    sys.exit(1)
if sys.argv[1:] == ["auth", "login"]:
    first = not os.path.exists(runs)
    os.makedirs(os.path.dirname(runs), exist_ok=True)
    open(runs, "a").close()
    print("Opening browser to sign in...")
    if first:
        print("If the browser didn't open, visit: https://claude.example/oauth/authorize?state=s1")
    sys.stdout.write("Paste code here if prompted > ")
    sys.stdout.flush()
    sys.stdin.readline()
    print("\\nOAuth error: invalid code")
    sys.exit(1)
sys.exit(2)
"""


async def test_a_finished_login_takes_its_url_with_it(tmp_path: Path) -> None:
    """The second login has printed no URL yet: the first one's, dead now, is not offered."""
    fake = tmp_path / "claude"
    fake.write_text(SECOND_WITHOUT_URL.format(python=sys.executable))
    fake.chmod(0o755)
    with running_hive({"HIVE_CLAUDE_BIN": str(fake)}) as hive:
        assert hive.cli("spawn", "alice").returncode == 0
        link = hive.cli("login-link", "alice")
        assert link.returncode == 0, link.stderr
        async with browser() as b:
            page = await (await b.new_context(viewport=DESKTOP)).new_page()  # type: ignore[arg-type]
            page.set_default_timeout(WAIT_MS)
            await page.goto(link.stdout.strip())
            await page.locator("#login-start").click()
            await page.locator("#login-url", has_text="state=s1").wait_for()
            await page.locator("#login-code").fill("bad-code")
            await page.locator("#login-code-send").click()
            await page.locator("#login-state", has_text="login failed").wait_for()

            await page.locator("#login-start").click()
            await page.locator("#login-output", has_text="Paste code here").wait_for()
            await page.locator("#login-state", has_text="logging in").wait_for()
            assert not await page.locator("#login-link-row").is_visible()
            assert not await page.locator("#login-code-form").is_visible()
            await page.locator("#login-cancel").click()
            await page.locator("#login-state", has_text="not logged in").wait_for()


async def test_an_agent_without_claude_says_so_and_offers_no_login(tmp_path: Path) -> None:
    with running_hive({"HIVE_CLAUDE_BIN": str(tmp_path / "no-such-claude")}) as hive:
        assert hive.cli("spawn", "alice").returncode == 0
        link = hive.cli("login-link", "alice")
        assert link.returncode == 0, link.stderr
        async with browser() as b:
            page = await (await b.new_context(viewport=DESKTOP)).new_page()  # type: ignore[arg-type]
            page.set_default_timeout(WAIT_MS)
            await page.goto(link.stdout.strip())
            await page.locator("#login-state", has_text="claude missing").wait_for()
            assert "cannot be run" in (await page.locator("#login-why").text_content() or "")
            assert not await page.locator("#login-start").is_visible()


async def test_an_agent_restart_finds_a_claude_installed_after_the_daemon_started() -> None:
    """HIVE_CLAUDE_BIN a bare name: each harness start looks it up on its PATH, so installing
    Claude Code and restarting the agent is enough; hive-core keeps running."""
    root = short_tmp()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    hive = Hive(
        root,
        {"HIVE_CLAUDE_BIN": "claude-later", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    try:
        hive.start()
        assert hive.cli("stop", "hm1nd").returncode == 0  # the test reads the manager's inbox
        assert hive.cli("spawn", "alice").returncode == 0
        async with hive.client() as host:
            await host.call(rq.Send(cmd="send", to="alice", body="hello"), rs.Sent)
        (missing,) = await manager_inbox(hive, wait=30)
        assert isinstance(missing.event, helper.ClaudeMissing)
        assert missing.event.detail == "claude-later is not on PATH"
        assert "then `hive-core restart alice`" in missing.body

        installed = bin_dir / "claude-later"
        installed.write_text(STAND_IN.format(python=sys.executable))
        installed.chmod(0o755)
        assert hive.cli("restart", "alice").returncode == 0

        (changed,) = await manager_inbox(hive, wait=30)  # its queued message's turn probes
        assert isinstance(changed.event, helper.NeedsLogin) and changed.event.agent == "alice"
        assert _login_state(hive) == "needs_login"
    finally:
        hive.close()
        shutil.rmtree(root, ignore_errors=True)
