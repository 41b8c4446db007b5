"""What an overseer hears about an agent's Claude Code: notes that name the step that works,
each told once per change, also across daemon restarts (the agents table remembers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from hive_agent import login
from hive_core import notices
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.registry import Registry
from hive_core.services import Services
from hive_share import helper
from hive_share.models import LoginReport, Role
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import FakeClock, services
from tests.hive_core.test_crash_watch import FakeBackend

AGENTS: tuple[tuple[str, Role], ...] = ((MANAGER_NAME, "manager"), ("alice", "agent"))

# -- the notes' texts -------------------------------------------------------------------


def test_a_login_note_names_the_cli_the_page_and_an_api_key() -> None:
    text = helper.summary(helper.NeedsLogin(agent="alice", detail="401"))
    assert "`hive-core login alice`" in text
    assert '"log in" on its page (`hive-core login-link alice`)' in text
    assert "ANTHROPIC_API_KEY" in text and "agent.toml [env]" in text


def test_a_claude_not_on_path_is_installed_then_the_agent_restarted(tmp_path: Path) -> None:
    detail = login.why_not_runnable("claude", {"PATH": str(tmp_path)})
    text = helper.summary(helper.ClaudeMissing(agent="alice", detail=detail))
    assert text.startswith("alice cannot run Claude Code (claude is not on PATH): install it")
    assert "npm install -g @anthropic-ai/claude-code" in text
    assert "then `hive-core restart alice`" in text
    assert "`./dev serve` and no HIVE_CLAUDE_BIN, which installs the pinned version" in text


def test_a_wrong_claude_path_names_hive_claude_bin_and_a_daemon_restart(tmp_path: Path) -> None:
    detail = login.why_not_runnable(str(tmp_path / "claude"), {})
    text = helper.summary(helper.ClaudeMissing(agent="alice", detail=detail))
    assert f"({tmp_path / 'claude'} does not exist or is not executable)" in text
    assert "install it at that path, then `hive-core restart alice`" in text
    assert "if HIVE_CLAUDE_BIN names the wrong path, fix it and restart hive-core" in text


# -- told once per change ---------------------------------------------------------------


class Daemon:
    """The services login_state uses, over a database that outlives them (a restart)."""

    def __init__(self, s: Services) -> None:
        self.s = s

    async def report(self, name: str, state: LoginReport, detail: str = "why") -> None:
        await notices.login_state(self.s, name, state, detail)

    async def told(self, recipient: str = MANAGER_NAME) -> list[str]:
        """The kinds of the helper events new in `recipient`'s inbox (acknowledged)."""
        got = await self.s.broker.recv(recipient, owner=1, wait_seconds=0, limit=50)
        await self.s.broker.ack(recipient, 1, [m.id for m in got])
        return [m.event.kind for m in got if m.event is not None]


@asynccontextmanager
async def running(db: Database, clock: FakeClock, root: Path) -> AsyncIterator[Daemon]:
    """A daemon's services, with hm1nd and alice registered."""
    bus = EventBus()
    registry = Registry(db, clock)
    await registry.load()
    for name, role in AGENTS:
        if registry.find(name) is None:
            await registry.add(name, role)
    broker = Broker(db, bus, clock, registry.is_recipient)
    s = services(db, bus, clock, registry, broker, FakeBackend(), root / "s", root / "r")
    try:
        yield Daemon(s)
    finally:
        broker.close()


async def test_the_same_state_after_a_restart_is_told_to_nobody_again(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with running(db, clock, tmp_path) as d:
        await d.report("alice", "claude_missing")
        await d.report("alice", "claude_missing")
        await d.report(MANAGER_NAME, "needs_login")
        assert await d.told() == ["claude_missing"]
        assert await d.told(OPERATOR) == ["needs_login"]
    async with running(db, clock, tmp_path) as d:  # the harnesses report the same again
        await d.report("alice", "claude_missing")
        await d.report(MANAGER_NAME, "needs_login")
        assert d.s.liveness.login == {"alice": "claude_missing", MANAGER_NAME: "needs_login"}
        assert await d.told() == []
        assert await d.told(OPERATOR) == []
        await d.s.registry.remove("alice")  # destroyed
    async with running(db, clock, tmp_path) as d:  # a new alice, spawned under the old name
        await d.report("alice", "claude_missing")
        assert await d.told() == ["claude_missing"]


async def test_each_change_is_told_also_across_restarts(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with running(db, clock, tmp_path) as d:
        await d.report("alice", "logged_in")  # the first state known: nothing to tell
        assert await d.told() == []
        await d.report("alice", "needs_login")
        await d.report("alice", "logged_in")
        await d.report("alice", "needs_login")  # logged in, then logged out again
        assert await d.told() == ["needs_login", "logged_in", "needs_login"]
    async with running(db, clock, tmp_path) as d:
        await d.report("alice", "logged_in")  # logged in while the daemon was down
        assert await d.told() == ["logged_in"]
    async with running(db, clock, tmp_path) as d:
        await d.report("alice", "logged_in")
        await d.report("alice", "claude_missing")
        assert await d.told() == ["claude_missing"]


async def test_racing_reports_tell_each_change_in_order(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with running(db, clock, tmp_path) as d:
        await asyncio.gather(d.report("alice", "needs_login"), d.report("alice", "logged_in"))
        assert await d.told() == ["needs_login", "logged_in"]
    async with running(db, clock, tmp_path) as d:
        assert d.s.registry.get("alice").login_told == "logged_in"
