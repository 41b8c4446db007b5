"""Real claude turns: the CLI against the fake API, our MCP server, real hive-core."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.hive import Hive
from tests.e2e.turns import (
    PRONOUNS,
    event_kinds,
    hive_with,
    operator_send,
    turn_rows,
    turns_done,
)
from tests.fake_anthropic import FakeAnthropic, Reply, Seen, text, tool_use

TOOL_LIST_BUDGET = 4000
"""Bytes of our tools' definitions in each request; they are sent on every call."""


def relay_script(seen: Seen) -> Reply:
    """alice forwards to bob; bob reports to the operator."""
    if seen.last_tool_results():
        return text("done")
    agent = seen.agent()
    if agent == "alice":
        return tool_use("mcp__hyperhive__send", {"to": "bob", "body": "hello bob"})
    if agent == "bob":
        return tool_use("mcp__hyperhive__send", {"to": "operator", "body": "bob got it"})
    return text("nothing to do")


@pytest.fixture
def relay() -> Iterator[tuple[Hive, FakeAnthropic]]:
    with hive_with(relay_script) as pair:
        yield pair


async def test_a_message_relays_through_two_agents_to_the_operator(
    relay: tuple[Hive, FakeAnthropic],
) -> None:
    hive, fake = relay
    for name in ("alice", "bob"):
        assert hive.cli("spawn", name).returncode == 0
    await operator_send(hive, "alice", "please greet bob")
    async with HiveClient(hive.host_sock) as op:
        async with asyncio.timeout(90):
            got = await op.call(rq.Inbox(cmd="inbox", wait_seconds=90), rs.Messages)
    assert [(m.sender, m.body) for m in got.messages] == [("bob", "bob got it")]

    alice_first = fake.requests_of("alice")[0]
    tools = [t for t in alice_first.body["tools"] if t["name"].startswith("mcp__hyperhive__")]
    by_name = {t["name"]: t for t in tools}
    assert set(by_name) == {
        f"mcp__hyperhive__{name}"
        for name in (
            "send", "recv", "set_status", "whoami", "ask", "answer", "remind",
            "list_reminders", "cancel_reminder", "get_open_threads",
        )
    }  # fmt: skip
    assert set(by_name["mcp__hyperhive__send"]["input_schema"]["properties"]) == {"to", "body"}
    assert len(json.dumps(tools)) < TOOL_LIST_BUDGET, len(json.dumps(tools))
    system = json.dumps(alice_first.body["system"])
    assert "You are **alice**" in system and PRONOUNS in system and "{{" not in system
    prompt = alice_first.last_user_text()
    assert "From: operator (the human operator)" in prompt
    assert "<<<BODY-" in prompt and "please greet bob" in prompt
    bob_first = fake.requests_of("bob")[0].last_user_text()
    assert "From: alice (agent)" in bob_first and "hello bob" in bob_first


async def test_turn_stats_and_history_record_what_happened(
    relay: tuple[Hive, FakeAnthropic],
) -> None:
    hive, fake = relay
    assert hive.cli("spawn", "alice").returncode == 0
    assert hive.cli("spawn", "bob").returncode == 0
    await operator_send(hive, "alice", "go")
    async with HiveClient(hive.host_sock) as op, asyncio.timeout(90):
        await op.call(rq.Inbox(cmd="inbox", wait_seconds=90), rs.Messages)
    fake.wait_for(lambda seen: len(seen) >= 4, "both agents' second requests")
    await turns_done(hive, "alice", 1)
    (row,) = turn_rows(hive, "alice")
    assert row["result_kind"] == "success"
    assert row["wake_from"] == "operator"
    assert json.loads(row["tools"]) == {"mcp__hyperhive__send": 1}
    assert row["tool_call_count"] == 1
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["model"] == "opus"
    assert row["session_id"]
    kinds = event_kinds(hive, "alice", row["turn_id"])
    assert kinds[0] == "turn_started" and kinds[-2:] == ["turn_ended", "turn_state_changed"]
    assert "tool_use" in kinds and "tool_result" in kinds and "text" in kinds
