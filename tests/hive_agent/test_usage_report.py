"""Turn usage reports: every stats row reaches hive-core once it can take it, oldest first,
and is never sent again once it did; an upgraded stats file does not resend its history."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hive_agent.turn_stats import STATS_FILE, TurnRow, TurnStats
from hive_agent.usage_report import UsageReporter, request
from hive_share import requests as rq
from hive_share import responses as rs
from tests.hive_agent.core_standin import BOUND, refuse, standing_in

OLD_SCHEMA = """
CREATE TABLE turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT, turn_id TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
    wake_from TEXT NOT NULL, result_kind TEXT NOT NULL, result_detail TEXT NOT NULL,
    started_at REAL NOT NULL, ended_at REAL NOT NULL, duration_ms INTEGER NOT NULL,
    session_id TEXT, new_session INTEGER NOT NULL, attempts INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL, cache_read_input_tokens INTEGER NOT NULL,
    context_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, tool_call_count INTEGER NOT NULL,
    tools TEXT NOT NULL, permission_denials TEXT NOT NULL,
    permission_denial_count INTEGER NOT NULL, open_threads_count INTEGER,
    open_reminders_count INTEGER
);
INSERT INTO turns VALUES (1, 'old-1', 'opus', 'operator', 'success', '', 10.0, 12.0, 2000,
    NULL, 0, 1, 100, 10, 0, 0, 100, 0.01, 0, '{}', '[]', 0, NULL, NULL);
"""
"""The turns table as the harness made it before the `reported` column, with one row."""


def _row(turn_id: str, **overrides: Any) -> TurnRow:
    fields: dict[str, Any] = {
        "turn_id": turn_id, "model": "sonnet", "wake_from": ["operator"],
        "result_kind": "success", "result_detail": "", "started_at": 1000.0,
        "ended_at": 1002.5, "session_id": "s-1", "new_session": False, "attempts": 1,
        **overrides,
    }  # fmt: skip
    return TurnRow(**fields)


def _reported(state: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(state / STATS_FILE)) as conn:
        return dict(conn.execute("SELECT turn_id, reported FROM turns ORDER BY id").fetchall())


@pytest.fixture
def state() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hv", dir="/tmp") as root:  # short: socket paths
        yield Path(root)


@contextlib.asynccontextmanager
async def _stats(state: Path, *turn_ids: str) -> AsyncIterator[TurnStats]:
    stats = await TurnStats.open(state)
    try:
        for turn_id in turn_ids:
            await stats.record(_row(turn_id))
        yield stats
    finally:
        await stats.close()


async def test_a_new_row_is_unreported_until_marked(state: Path) -> None:
    async with _stats(state) as stats:
        await stats.record(
            _row("t-1", input_tokens=200, output_tokens=14, cache_creation_input_tokens=40,
                 cache_read_input_tokens=60, cost_usd=0.25, tools={"Bash": 2, "Read": 1})
        )  # fmt: skip
        assert _reported(state) == {"t-1": 0}
        assert await stats.unreported(10) == [
            {"turn_id": "t-1", "started_at": 1000.0, "ended_at": 1002.5, "model": "sonnet",
             "result_kind": "success", "input_tokens": 200, "output_tokens": 14,
             "cache_creation_input_tokens": 40, "cache_read_input_tokens": 60,
             "cost_usd": 0.25, "tools": {"Bash": 2, "Read": 1}},
        ]  # fmt: skip
        await stats.mark("t-1", 1)
        assert await stats.unreported(10) == []
    assert _reported(state) == {"t-1": 1}


async def test_an_older_file_gets_the_column_and_its_rows_count_as_reported(
    state: Path,
) -> None:
    with contextlib.closing(sqlite3.connect(state / STATS_FILE)) as conn:
        conn.executescript(OLD_SCHEMA)
    async with _stats(state, "new-1"):
        pass
    async with _stats(state, "new-2") as stats:  # opening it again changes nothing more
        assert [r["turn_id"] for r in await stats.unreported(10)] == ["new-1", "new-2"]
    assert _reported(state) == {"old-1": 1, "new-1": 0, "new-2": 0}


async def test_rows_are_resent_after_hive_core_was_away_oldest_first_and_counted_once(
    state: Path,
) -> None:
    sock = state / "agent.sock"
    async with _stats(state, "t-b", "t-a") as stats:
        await stats.record(
            _row("t-c", model="opus", result_kind="max_turns", started_at=2000.0,
                 ended_at=2010.0, input_tokens=1200, output_tokens=340,
                 cache_creation_input_tokens=56, cache_read_input_tokens=7800, cost_usd=0.5,
                 tools={"Bash": 3, "mcp__hyperhive__send": 1})
        )  # fmt: skip
        reporter = UsageReporter(sock, stats, _no_tasks())
        with anyio.fail_after(BOUND):
            assert await reporter.send_pending() is False  # nothing listens yet
            assert _reported(state) == {"t-b": 0, "t-a": 0, "t-c": 0}
            with standing_in(sock) as core:
                assert await reporter.send_pending() is True
                assert await reporter.send_pending() is True  # nothing left to send
                await stats.record(_row("t-d"))
                assert await reporter.send_pending() is True
    sent = core.seen("turn_usage")
    assert [r["turn_id"] for r in sent] == ["t-b", "t-a", "t-c", "t-d"]
    assert sent[2] == {
        "cmd": "turn_usage", "turn_id": "t-c", "started_at": 2000.0, "ended_at": 2010.0,
        "model": "opus", "result_kind": "max_turns", "input_tokens": 1200,
        "output_tokens": 340, "cache_creation_input_tokens": 56,
        "cache_read_input_tokens": 7800, "cost_usd": 0.5,
        "tools": {"Bash": 3, "mcp__hyperhive__send": 1},
    }  # fmt: skip
    assert _reported(state) == {"t-b": 1, "t-a": 1, "t-c": 1, "t-d": 1}


@pytest.mark.parametrize("code", ["unknown_verb", "verb_not_allowed", "busy", "storage"])
async def test_a_hive_core_that_does_not_take_a_row_keeps_it_and_the_rest(
    state: Path, code: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sock = state / "agent.sock"
    async with _stats(state, "t-1", "t-2") as stats:
        reporter = UsageReporter(sock, stats, _no_tasks())
        with anyio.fail_after(BOUND):
            with standing_in(sock, {"turn_usage": refuse(code)}) as refusing:
                assert await reporter.send_pending() is False
            assert _reported(state) == {"t-1": 0, "t-2": 0}
            with standing_in(sock) as core:
                assert await reporter.send_pending() is True
    assert [r["turn_id"] for r in refusing.seen("turn_usage")] == ["t-1"]  # stopped there
    assert [r["turn_id"] for r in core.seen("turn_usage")] == ["t-1", "t-2"]
    assert _reported(state) == {"t-1": 1, "t-2": 1}
    assert f"could not report turn usage ({code}: turn_usage: refused)" in caplog.text


async def test_a_row_hive_core_refuses_as_invalid_is_never_resent(state: Path) -> None:
    sock = state / "agent.sock"

    def answer(req: dict[str, Any]) -> Any:
        if req["turn_id"] == "t-2":
            return rs.Error(code="invalid_request", error="no")
        return rs.Done(detail="noted")

    async with _stats(state, "t-1", "t-2", "t-3") as stats:
        reporter = UsageReporter(sock, stats, _no_tasks())
        with anyio.fail_after(BOUND), standing_in(sock, {"turn_usage": answer}) as core:
            assert await reporter.send_pending() is True
            assert await reporter.send_pending() is True
    assert [r["turn_id"] for r in core.seen("turn_usage")] == ["t-1", "t-2", "t-3"]
    assert _reported(state) == {"t-1": 1, "t-2": 2, "t-3": 1}


async def test_a_flush_asked_for_during_another_sends_what_came_meanwhile(state: Path) -> None:
    sock = state / "agent.sock"
    async with _stats(state, "t-1") as stats:
        with anyio.fail_after(BOUND), standing_in(sock) as core:
            async with anyio.create_task_group() as tg:
                reporter = UsageReporter(sock, stats, tg)
                reporter.flush()
                await stats.record(_row("t-2"))
                reporter.flush()  # the first is under way: it goes round once more
    assert [r["turn_id"] for r in core.seen("turn_usage")] == ["t-1", "t-2"]
    assert _reported(state) == {"t-1": 1, "t-2": 1}


async def test_a_stopping_harness_lets_the_flush_under_way_end_within_a_bound(
    state: Path,
) -> None:
    sock = state / "agent.sock"
    release = threading.Event()

    def held(req: dict[str, Any]) -> Any:
        release.wait(BOUND)
        return rs.Done(detail="noted")

    async with _stats(state, "t-1") as stats:
        with anyio.fail_after(BOUND), standing_in(sock, {"turn_usage": held}) as core:
            async with anyio.create_task_group() as tg:
                reporter = UsageReporter(sock, stats, tg)
                assert await reporter.wind_down(0) is True  # nothing under way
                reporter.flush()
                await anyio.to_thread.run_sync(
                    core.wait_for, lambda c: bool(c.seen("turn_usage")), "the report"
                )
                assert await reporter.wind_down(0.01) is False  # hive-core holds its answer
                release.set()
                assert await reporter.wind_down(BOUND) is True
                assert _reported(state) == {"t-1": 1}


def test_a_rows_figures_are_held_within_the_wire_bounds() -> None:
    tools = {f"tool{n}": n for n in range(1, 301)} | {"x" * 300: 1000, "zero": 0}
    row = {
        "turn_id": "t-1", "started_at": -5.0, "ended_at": math.inf, "model": "m" * 300,
        "result_kind": "success", "input_tokens": 10**15, "output_tokens": -3,
        "cache_creation_input_tokens": None, "cache_read_input_tokens": 7,
        "cost_usd": math.nan, "tools": tools,
    }  # fmt: skip
    report = request(row)
    assert isinstance(report, rq.ReportTurnUsage)
    assert (report.started_at, report.ended_at) == (0.0, 0.0)
    assert report.model == "m" * 100
    assert (report.input_tokens, report.output_tokens) == (10**12, 0)
    assert (report.cache_creation_input_tokens, report.cache_read_input_tokens) == (0, 7)
    assert report.cost_usd == 0.0
    assert len(report.tools) == 200
    assert report.tools["x" * 200] == 1000  # the most called kept, the name cut
    assert "tool102" in report.tools and "tool101" not in report.tools
    assert "zero" not in report.tools


def _no_tasks() -> Any:
    """`send_pending` is awaited directly in these tests: no task is ever started."""
    return None
