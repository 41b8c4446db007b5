from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, cast

import pytest

from hive_agent import serve
from hive_agent.history import EventHistory
from hive_agent.turn_stats import STATS_FILE, TurnRow, TurnStats
from hive_share import live


def _rows(path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM turns ORDER BY id")]


def _row(turn_id: str = "t-1", **overrides: Any) -> TurnRow:
    fields: dict[str, Any] = {
        "turn_id": turn_id,
        "model": "sonnet",
        "wake_from": ["operator", "alice"],
        "result_kind": "success",
        "result_detail": "sent it",
        "started_at": 1000.0,
        "ended_at": 1002.5,
        "session_id": "s-1",
        "new_session": True,
        "attempts": 2,
        **overrides,
    }
    return TurnRow(**fields)


async def test_a_recorded_turn_is_one_row_with_its_derived_columns(tmp_path: Path) -> None:
    stats = await TurnStats.open(tmp_path)
    try:
        await stats.record(
            _row(
                input_tokens=200,
                output_tokens=14,
                cache_creation_input_tokens=40,
                cache_read_input_tokens=60,
                context_tokens=300,
                cost_usd=0.0013,
                tools={"mcp__hyperhive__send": 2, "Bash": 1},
                permission_denials=[
                    {"tool_name": "Write", "tool_use_id": "toolu_9", "tool_input": {"path": "/x"}}
                ],
                open_threads_count=4,
            )
        )
    finally:
        await stats.close()
    (row,) = _rows(tmp_path / STATS_FILE)
    assert row["turn_id"] == "t-1"
    assert row["model"] == "sonnet"
    assert row["wake_from"] == "operator,alice"
    assert row["result_kind"] == "success"
    assert row["result_detail"] == "sent it"
    assert row["duration_ms"] == 2500
    assert row["session_id"] == "s-1"
    assert row["new_session"] == 1
    assert row["attempts"] == 2
    assert (row["input_tokens"], row["output_tokens"]) == (200, 14)
    assert (row["cache_creation_input_tokens"], row["cache_read_input_tokens"]) == (40, 60)
    assert row["context_tokens"] == 300
    assert row["cost_usd"] == pytest.approx(0.0013)
    assert row["tool_call_count"] == 3
    assert json.loads(row["tools"]) == {"Bash": 1, "mcp__hyperhive__send": 2}
    assert json.loads(row["permission_denials"]) == [
        {"tool_name": "Write", "tool_use_id": "toolu_9", "tool_input": {"path": "/x"}}
    ]
    assert row["permission_denial_count"] == 1
    assert row["open_threads_count"] == 4
    assert row["open_reminders_count"] is None


async def test_a_turn_without_tools_or_denials_records_zero_counts(tmp_path: Path) -> None:
    stats = await TurnStats.open(tmp_path)
    try:
        await stats.record(_row(new_session=False, session_id=None))
    finally:
        await stats.close()
    (row,) = _rows(tmp_path / STATS_FILE)
    assert row["tool_call_count"] == 0
    assert row["permission_denial_count"] == 0
    assert json.loads(row["tools"]) == {}
    assert json.loads(row["permission_denials"]) == []
    assert row["new_session"] == 0
    assert row["session_id"] is None


async def test_each_turn_is_recorded_once(tmp_path: Path) -> None:
    stats = await TurnStats.open(tmp_path)
    try:
        await stats.record(_row("t-1"))
        await stats.record(_row("t-2", tools={"Bash": 5}))
        with pytest.raises(sqlite3.IntegrityError):
            await stats.record(_row("t-1"))
    finally:
        await stats.close()
    rows = _rows(tmp_path / STATS_FILE)
    assert [(r["turn_id"], r["tool_call_count"]) for r in rows] == [("t-1", 0), ("t-2", 5)]


DAY = 24 * 3600.0
NOW = 1_700_000_000.0


async def test_prune_deletes_only_turns_that_ended_more_than_90_days_ago(tmp_path: Path) -> None:
    stats = await TurnStats.open(tmp_path)
    try:
        for turn_id, age in (("t-old", 91 * DAY), ("t-edge", 90 * DAY), ("t-new", DAY)):
            ended = NOW - age
            await stats.record(_row(turn_id, started_at=ended - 5, ended_at=ended))
        assert await stats.prune(NOW) == 1
        assert await stats.prune(NOW) == 0
    finally:
        await stats.close()
    assert [r["turn_id"] for r in _rows(tmp_path / STATS_FILE)] == ["t-edge", "t-new"]


class _Failing:
    async def prune(self, now: float) -> int:
        raise sqlite3.OperationalError("disk I/O error")


async def test_the_harness_prunes_both_files_and_one_failure_spares_the_other(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The hourly pruning of `hive-agent serve`: events after 7 days, turns after 90."""
    now = time.time()  # the history stamps its events with the wall clock
    history = await EventHistory.open(tmp_path)
    stats = await TurnStats.open(tmp_path)
    try:
        await stats.record(_row("t-old", started_at=now - 100 * DAY, ended_at=now - 99 * DAY))
        await stats.record(_row("t-new", started_at=now - 2, ended_at=now - 1))
        await history.publish(live.Note(text="now"), None)
        await serve.prune_once(history, stats, now + 8 * DAY)
        assert await history.recent() == []
        assert [r["turn_id"] for r in _rows(tmp_path / STATS_FILE)] == ["t-new"]
        failing = cast(EventHistory, _Failing())
        await stats.record(_row("t-older", started_at=now - 200 * DAY, ended_at=now - 199 * DAY))
        await serve.prune_once(failing, stats, now)
        assert [r["turn_id"] for r in _rows(tmp_path / STATS_FILE)] == ["t-new"]
        assert "pruning the events failed" in caplog.text
    finally:
        await history.close()
        await stats.close()
