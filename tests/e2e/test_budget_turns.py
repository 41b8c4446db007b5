"""Budgets with real claude turns against the scripted fake Messages API: `hive-core usage`
equals the sums of the agent's own turn-stats rows, and an agent that reaches its token
budget has its next turn held behind a `budget` approval, its message kept; approving lets
the turn run."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.dashboard import session, stream
from tests.e2e.hive import Hive
from tests.e2e.test_stuck import attention_until, of_kind
from tests.e2e.turns import hive_with, operator_send, turn_rows, turns_done
from tests.fake_anthropic import Reply, Seen, text

FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def replies(seen: Seen) -> Reply:
    return text("done", input_tokens=400)


def usage_of(hive: Hive, name: str, window: str) -> dict[str, Any]:
    got = hive.cli("usage", name, "--window", window, "--json")
    assert got.returncode == 0, got.stderr
    (row,) = json.loads(got.stdout)
    assert isinstance(row, dict)
    return row


def undelivered(hive: Hive, to: str) -> list[str]:
    db = sqlite3.connect(f"file:{hive.state_dir / 'hive.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT body FROM messages WHERE recipient = ? AND delivered_at IS NULL ORDER BY id",
            (to,),
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


async def turns_within(hive: Hive, name: str, count: int, bound: float) -> int:
    """How many turns `name` has run once `count` are done or `bound` seconds have passed."""
    async with HiveClient(hive.harness_sock(name)) as h:
        state = await h.call(
            rq.TurnStatus(cmd="turn_status", after_turns=count, wait_seconds=bound),
            rs.HarnessState,
        )
    return state.turns_run


async def test_a_reached_budget_holds_the_next_turn_until_approved() -> None:
    # Approving adds what was spent past the limit and 500 % of it: room for the next turn.
    env = {"HIVE_BUDGET_TOKENS_5H": "300", "HIVE_BUDGET_GRANT_PERCENT": "500"}
    with hive_with(replies, **env) as (hive, fake):
        assert hive.cli("stop", "hm1nd").returncode == 0  # its turns would spend too
        assert hive.cli("spawn", "alice").returncode == 0
        async with session(hive) as client, stream(client) as frames:
            await operator_send(hive, "alice", "first")
            await turns_done(hive, "alice", 1)
            items = await attention_until(frames, lambda i: bool(of_kind(i, "over_budget")))
            (item,) = of_kind(items, "over_budget")
            assert item["agent"] == "alice" and item["severity"] == "urgent"

            # What usage says is what the agent's own turn-stats rows add up to.
            rows = turn_rows(hive, "alice")
            row = usage_of(hive, "alice", "5h")
            assert row["turns"] == len(rows) == 1
            for field in FIELDS:
                assert row[field] == sum(r[field] for r in rows), field
            assert row["tokens"] == sum(
                r["input_tokens"] + r["cache_creation_input_tokens"] + r["output_tokens"]
                for r in rows
            )
            assert row["tokens"] >= 300 and row["state"] == "over"

            pending = json.loads(hive.cli("pending", "--json").stdout)
            (budget,) = [p for p in pending if p["kind"] == "budget"]
            assert budget["id"] == item["ref"] and budget["agent"] == "alice"

            await operator_send(hive, "alice", "second")
            assert await turns_within(hive, "alice", 2, bound=3.0) == 1  # held: no turn
            assert undelivered(hive, "alice") == ["second"]  # kept, not lost

            assert hive.cli("approve", str(budget["id"])).returncode == 0
            await attention_until(frames, lambda i: not of_kind(i, "over_budget"))
        await turns_done(hive, "alice", 2)
        assert "second" in fake.requests_of("alice")[-1].raw  # the held message, now seen
        after = usage_of(hive, "alice", "5h")
        assert (after["turns"], after["state"]) == (2, "ok")
