"""Shared pieces of the turn-loop tests: a daemon wired to the fake API and the real CLI."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from hive_share.live import TurnState
from tests.e2e.hive import Hive, short_tmp
from tests.fake_anthropic import FakeAnthropic, Script

REPO = Path(__file__).resolve().parents[2]
CLAUDE_BIN = os.environ.get("HIVE_TEST_CLAUDE_BIN") or str(
    REPO / ".tools" / "claude" / "node_modules" / ".bin" / "claude"
)
PRONOUNS = "they/them"


def require_claude() -> str:
    if not os.access(CLAUDE_BIN, os.X_OK):
        pytest.fail(f"the Claude Code CLI is not installed at {CLAUDE_BIN}; run ./dev test")
    return CLAUDE_BIN


def turn_env(fake: FakeAnthropic, root: Path) -> dict[str, str]:
    home = root / "home"
    home.mkdir(exist_ok=True)
    return {
        "HIVE_CLAUDE_BIN": require_claude(),
        "ANTHROPIC_BASE_URL": fake.url,
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "MCP_TIMEOUT": "20000",
        "HOME": str(home),
        "HIVE_OPERATOR_PRONOUNS": PRONOUNS,
    }


def state_dir(hive: Hive, name: str) -> Path:
    return hive.state_dir / "agents" / name / "state"


def turn_rows(hive: Hive, name: str) -> list[dict[str, Any]]:
    path = state_dir(hive, name) / "hyperhive-turn-stats.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM turns ORDER BY id")]
    finally:
        db.close()


def event_kinds(hive: Hive, name: str, turn_id: str) -> list[str]:
    db = sqlite3.connect(state_dir(hive, name) / "hyperhive-events.sqlite")
    try:
        rows = db.execute("SELECT kind FROM events WHERE turn_id = ? ORDER BY id", (turn_id,))
        return [r[0] for r in rows]
    finally:
        db.close()


async def operator_send(hive: Hive, to: str, body: str) -> int:
    async with HiveClient(hive.host_sock) as op:
        return (await op.call(rq.Send(cmd="send", to=to, body=body), rs.Sent)).id


async def control(hive: Hive, name: str, req: Any) -> str:
    async with HiveClient(hive.harness_sock(name)) as h:
        return (await h.call(req, rs.Done)).detail


async def turns_done(hive: Hive, name: str, count: int, bound: float = 90.0) -> rs.HarnessState:
    """Wait (long-poll, bounded) until agent `name` has finished `count` turns."""
    async with HiveClient(hive.harness_sock(name)) as h:
        state = await h.call(
            rq.TurnStatus(cmd="turn_status", after_turns=count, wait_seconds=bound),
            rs.HarnessState,
        )
    assert state.turns_run >= count, f"{name} ran {state.turns_run} turns, expected {count}"
    return state


@contextmanager
def hive_with(script: Script, **extra_env: str) -> Iterator[tuple[Hive, FakeAnthropic]]:
    """A daemon whose agents run the real CLI against a fake API driven by `script`."""
    root = short_tmp()
    with FakeAnthropic(script) as fake:
        env = turn_env(fake, root)
        env.update(extra_env)
        hive = Hive(root, env)
        try:
            hive.start()
            yield hive, fake
        finally:
            hive.close()
            shutil.rmtree(root, ignore_errors=True)


def write_agent_toml(hive: Hive, name: str, text: str) -> None:
    (hive.state_dir / "agents" / name / "applied" / "agent.toml").write_text(text)


async def wait_state(hive: Hive, name: str, state: TurnState, bound: float = 60.0) -> None:
    async with HiveClient(hive.harness_sock(name)) as h:
        got = await h.call(
            rq.TurnStatus(cmd="turn_status", until_state=state, wait_seconds=bound),
            rs.HarnessState,
        )
    assert got.turn_state == state, f"{name} is {got.turn_state}, not {state}"
