"""The MCP tools as the model uses them: manager lifecycle tools, status, whoami, recv."""

from __future__ import annotations

import json

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.turns import hive_with, operator_send, turns_done
from tests.fake_anthropic import Reply, Seen, text, tool_use


def results_text(seen: Seen) -> str:
    return json.dumps(seen.last_tool_results())


def manager_script(seen: Seen) -> Reply:
    """hm1nd lists, requests a spawn, kills a sub-agent, then tries to kill itself."""
    if seen.agent() != "hm1nd":
        return text("ok")
    steps = [
        ("mcp__hyperhive__list", {}),
        ("mcp__hyperhive__request_spawn", {"name": "newbie"}),
        ("mcp__hyperhive__kill", {"name": "worker"}),
        ("mcp__hyperhive__kill", {"name": "hm1nd"}),
        ("mcp__hyperhive__request_spawn", {"name": "../etc"}),
    ]
    done = sum(
        1 for m in seen.body["messages"] if m["role"] == "user" and "tool_result" in json.dumps(m)
    )
    if done < len(steps):
        return tool_use(*steps[done])
    return text("all done")


async def test_the_manager_lists_requests_spawns_and_kills_through_its_tools() -> None:
    with hive_with(manager_script) as (hive, fake):
        assert hive.cli("spawn", "worker").returncode == 0
        await operator_send(hive, "hm1nd", "tidy up")
        await turns_done(hive, "hm1nd", 1)
        requests = fake.requests_of("hm1nd")
        names = set(requests[0].tool_names())
        assert {"mcp__hyperhive__list", "mcp__hyperhive__request_spawn",
                "mcp__hyperhive__kill", "mcp__hyperhive__restart"} <= names  # fmt: skip
        listing = results_text(requests[1])
        assert "worker (agent): running" in listing and "hm1nd (manager)" in listing
        assert "Queued approval 1: spawn newbie" in results_text(requests[2])
        assert "killed worker" in results_text(requests[3])
        refused_self = requests[4].last_tool_results()[0]
        assert refused_self["is_error"] is True and "not on itself" in json.dumps(refused_self)
        refused_name = requests[5].last_tool_results()[0]
        assert refused_name["is_error"] is True
        assert "lowercase letters" in json.dumps(refused_name)
        pending = json.loads(hive.cli("pending", "--json").stdout)
        assert [(p["agent"], p["requester"]) for p in pending] == [("newbie", "hm1nd")]
        listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
        assert listed["worker"]["state"] == "stopped"


def agent_script(seen: Seen) -> Reply:
    """alice sets her status, asks who she is, then drains her inbox with recv."""
    if seen.agent() != "alice":
        return text("ok")
    results = seen.last_tool_results()
    count = sum(1 for m in seen.body["messages"] if "tool_result" in json.dumps(m))
    if not results and count == 0:
        return tool_use("mcp__hyperhive__set_status", {"status": "triaging mail"})
    steps = [
        ("mcp__hyperhive__whoami", {}),
        ("mcp__hyperhive__recv", {"wait_seconds": 0}),
        ("mcp__hyperhive__recv", {"wait_seconds": 500}),
    ]
    if count <= len(steps):
        return tool_use(*steps[count - 1])
    return text("done")


async def test_status_whoami_and_recv_tools_work_for_an_agent() -> None:
    with hive_with(agent_script) as (hive, fake):
        assert hive.cli("spawn", "alice").returncode == 0
        async with HiveClient(hive.host_sock) as op:
            first = await op.call(rq.Send(cmd="send", to="alice", body="start"), rs.Sent)
            fake.wait_for(lambda seen: len(seen) >= 1, "alice's first request")
            queued = await op.call(rq.Send(cmd="send", to="alice", body="also this"), rs.Sent)
        await turns_done(hive, "alice", 1)
        requests = fake.requests_of("alice")
        assert "Status set: triaging mail" in results_text(requests[1])
        assert "You are alice (agent)." in results_text(requests[2])
        drained = results_text(requests[3])
        assert "also this" in drained and "From: operator" in drained
        assert f"message {queued.id}" in drained and f"message {first.id}" not in drained
        too_long = requests[4].last_tool_results()[0]
        assert too_long["is_error"] is True and "between 0 and 180" in json.dumps(too_long)
        listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
        assert listed["alice"]["status"] == "triaging mail"
        status_file = hive.state_dir / "agents" / "alice" / "state" / "hyperhive-status"
        assert status_file.read_text().strip() == "triaging mail"
        # The drained message was acknowledged by the tool: it never wakes another turn.
        state = await turns_done(hive, "alice", 1)
        assert state.turns_run == 1
