"""A whole harness (`serve.serve`, in this test's event loop) tells hive-core what its turns
did: the stuck limits asked after `alive` and applied, a stuck signal seen in a real turn's
stream, each turn's usage, and the usage a hive-core that could not take it never got,
resent at the next start, oldest first, once.

hive-core is a stand-in socket answering from threads (`core_standin.py`); claude is a
script that prints a recorded stream-json turn: three identical `Bash` calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from hive_agent.serve import serve
from hive_agent.settings import HarnessSettings
from hive_agent.turn_stats import STATS_FILE, TurnRow, TurnStats
from hive_share import responses as rs
from hive_share.models import Message
from tests.hive_agent.core_standin import BOUND, Answer, StandInCore, refuse, standing_in

STREAM_ENV = "HIVE_TEST_STREAM"
CLAUDE = f'#!/bin/sh\ncat "${STREAM_ENV}"\n'


def _stream() -> str:
    lines: list[dict[str, Any]] = [
        {"type": "system", "subtype": "init", "session_id": "s-1", "model": "m",
         "mcp_servers": []},
    ]  # fmt: skip
    for n in range(1, 4):
        call = {"type": "tool_use", "id": f"toolu_{n}", "name": "Bash", "input": {"command": "ls"}}
        usage = {"input_tokens": 1000 if n == 1 else 100, "output_tokens": 1}
        lines.append(
            {"type": "assistant",
             "message": {"id": f"msg_{n}", "model": "m", "content": [call], "usage": usage}}
        )  # fmt: skip
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "a b c"}
        lines.append({"type": "user", "message": {"role": "user", "content": [result]}})
    lines.append(
        {"type": "result", "subtype": "success", "is_error": False, "result": "done",
         "total_cost_usd": 0.25,
         "usage": {"input_tokens": 400, "output_tokens": 20, "cache_creation_input_tokens": 30,
                   "cache_read_input_tokens": 5000}}
    )  # fmt: skip
    return "".join(json.dumps(line) + "\n" for line in lines)


@dataclass
class Rig:
    root: Path
    settings: HarnessSettings
    env: dict[str, str]

    def message(self, n: int) -> Message:
        return Message(id=n, sender="operator", recipient="alice", body=f"job {n}", sent_at=1.0)

    def reported(self) -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(self.settings.state / STATS_FILE)) as conn:
            return dict(conn.execute("SELECT turn_id, reported FROM turns ORDER BY id"))

    async def serve_until(
        self, answers: dict[str, Answer], inbox: list[Message], done: Callable[[StandInCore], bool]
    ) -> StandInCore:
        """Run the harness against a stand-in until `done(stand-in)` holds, then stop it
        with SIGTERM."""
        with standing_in(self.settings.socket, answers) as core:
            core.inbox.extend(inbox)

            def drive() -> None:
                core.wait_for(done, "what the test waits for")
                os.kill(os.getpid(), signal.SIGTERM)

            driver = threading.Thread(target=drive, daemon=True)
            driver.start()
            with anyio.fail_after(BOUND * 2):
                await serve(self.settings, self.env)
            await anyio.to_thread.run_sync(driver.join, BOUND)
            assert not driver.is_alive()
        return core


@pytest.fixture
def rig() -> Iterator[Rig]:
    root = Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))  # short: socket paths
    state = root / "state"
    state.mkdir()
    claude = root / "claude"
    claude.write_text(CLAUDE)
    claude.chmod(0o755)
    stream = root / "stream.jsonl"
    stream.write_text(_stream())
    settings = HarnessSettings(
        agent_name="alice", socket=root / "agent.sock",
        harness_socket=root / "run" / "harness.sock", state=state, web_port=0,
        claude_bin=str(claude), extra_mcp_file=None,
    )  # fmt: skip
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(root),
        "ANTHROPIC_API_KEY": "sk-test",  # counts as logged in: no `claude auth status`
        STREAM_ENV: str(stream),
    }
    try:
        yield Rig(root, settings, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cmds(core: StandInCore) -> list[str]:
    return [r["cmd"] for r in core.requests]


def _usage_of(core: StandInCore) -> list[str]:
    return [r["turn_id"] for r in core.seen("turn_usage")]


async def test_a_turn_reports_its_stuck_signal_and_usage_and_old_usage_goes_first(
    rig: Rig,
) -> None:
    stats = await TurnStats.open(rig.settings.state)
    for turn_id in ("old-1", "old-2"):  # left unsent by an earlier run of the harness
        now = time.time()
        await stats.record(
            TurnRow(turn_id=turn_id, model="opus", wake_from=["operator"],
                    result_kind="success", result_detail="", started_at=now - 5,
                    ended_at=now, session_id=None, new_session=False, attempts=1)
        )  # fmt: skip
    await stats.close()
    limits = rs.WatchLimits(no_progress_seconds=600.0, repeat=3, burn_tokens=1001)

    core = await rig.serve_until(
        {"watch_limits": lambda req: limits},
        [rig.message(1), rig.message(2)],
        lambda c: len(c.seen("turn_usage")) >= 4 and len(c.seen("stuck")) >= 4,
    )

    cmds = _cmds(core)
    assert cmds.index("alive") < cmds.index("watch_limits") < cmds.index("turn_usage")
    # each turn took a place, said when its claude was up (at system/init), in that order
    slots = [(r["action"], r.get("oldest")) for r in core.seen("turn_slot")]
    assert slots == [("take", 1), ("started", None), ("take", 2), ("started", None)]
    old_1, old_2, first, second = _usage_of(core)
    assert (old_1, old_2) == ("old-1", "old-2") and first != second
    # hive-core's limits applied (not the defaults, 5 and 2M): in each turn, the first
    # message's 1001 tokens before any call changed anything, and the third `ls`
    assert [(r["turn_id"], r["signal"], r["detail"], r["active"]) for r in core.seen("stuck")] == [
        report
        for turn in (first, second)
        for report in (
            (turn, "burn", "1k tokens, nothing written, run or sent", True),
            (turn, "repetition", 'Bash {"command":"ls"} called 3 times', True),
        )
    ]
    usage = core.seen("turn_usage")[2]
    assert {k: usage[k] for k in ("model", "result_kind", "cost_usd", "tools")} == {
        "model": "opus",
        "result_kind": "success",
        "cost_usd": 0.25,
        "tools": {"Bash": 3},
    }
    assert (usage["input_tokens"], usage["output_tokens"]) == (400, 20)
    assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (30, 5000)
    assert usage["started_at"] <= usage["ended_at"]
    assert rig.reported() == {"old-1": 1, "old-2": 1, first: 1, second: 1}


async def test_usage_an_older_hive_core_refused_is_sent_once_after_its_update(rig: Rig) -> None:
    older = {
        "watch_limits": refuse("unknown_verb"),
        "turn_usage": refuse("unknown_verb"),
        "turn_slot": refuse("unknown_verb"),  # older than turn admission: the turn runs
    }
    before = await rig.serve_until(older, [rig.message(1)], lambda c: bool(c.seen("turn_usage")))
    (turn,) = _usage_of(before)
    assert before.seen("stuck") == []  # hive-core's defaults: 3 calls are not 5
    assert rig.reported() == {turn: 0}

    after = await rig.serve_until({}, [], lambda c: bool(c.seen("turn_usage")))

    assert _usage_of(after) == [turn]
    assert rig.reported() == {turn: 1}
    again = await rig.serve_until({}, [], lambda c: bool(c.seen("watch_limits")))
    assert "turn_usage" not in _cmds(again)
