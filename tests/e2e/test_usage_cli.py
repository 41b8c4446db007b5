"""`hive-core usage` against a real daemon: the turns agents report on their sockets are summed
per agent and window (the figures equal the rows' sums), with its exit statuses; and a budget
reached end to end: the agent's `recv` leases nothing, the operator approves, the queued
message goes out."""

from __future__ import annotations

import json
import time
from typing import Any

from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.hive import Hive, running_hive

FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
HOUR = 3600.0


def turn(turn_id: str, ago: float, n: int) -> rq.ReportTurnUsage:
    end = time.time() - ago
    return rq.ReportTurnUsage(
        cmd="turn_usage", turn_id=turn_id, started_at=end - 20, ended_at=end, model="opus",
        result_kind="success", input_tokens=1000 * n, output_tokens=100 * n + 7,
        cache_creation_input_tokens=500 * n, cache_read_input_tokens=20_000 * n,
        cost_usd=0.125 * n, tools={"Bash": n},
    )  # fmt: skip


async def report(client: HiveClient, req: rq.ReportTurnUsage) -> str:
    return (await client.call(req, rs.Done)).detail


def usage_json(hive: Hive, *args: str) -> list[dict[str, Any]]:
    got = hive.cli("usage", *args, "--json")
    assert got.returncode == 0, got.stderr
    rows: list[dict[str, Any]] = json.loads(got.stdout)
    return rows


def sums(rows: list[rq.ReportTurnUsage]) -> dict[str, Any]:
    found: dict[str, Any] = {f: sum(getattr(r, f) for r in rows) for f in FIELDS}
    found["turns"] = len(rows)
    found["tokens"] = sum(r.input_tokens + r.cache_creation_input_tokens + r.output_tokens
                          for r in rows)  # fmt: skip
    found["cost_usd"] = sum(r.cost_usd for r in rows)
    return found


def figures(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in (*FIELDS, "turns", "tokens", "cost_usd")}


async def test_usage_sums_the_turns_the_agents_reported() -> None:
    with running_hive() as hive:
        assert hive.cli("stop", "hm1nd").returncode == 0
        hive.spawn_idle("alice", "bob")
        sent: dict[str, list[rq.ReportTurnUsage]] = {"alice": [], "bob": []}
        ages = {"alice": [0, 60, 2 * HOUR, 6 * HOUR, 3 * 24 * HOUR], "bob": [30, 10 * HOUR]}
        for name, agent_ages in ages.items():
            async with HiveClient(hive.agent_sock(name)) as agent:
                for i, ago in enumerate(agent_ages, 1):
                    req = turn(f"{name}-{i}", ago, i)
                    assert await report(agent, req) == f"recorded turn {req.turn_id}"
                    sent[name].append(req)
                resent = sent[name][0]
                assert await report(agent, resent) == f"turn {resent.turn_id} was recorded already"

        got = {(r["agent"], r["window"]): r for r in usage_json(hive)}
        assert sorted(got) == sorted(
            (a, w) for a in ("hm1nd", "alice", "bob", "*") for w in ("5h", "7d")
        )
        now = time.time()
        for window, length in (("5h", 5 * HOUR), ("7d", 7 * 24 * HOUR)):
            inside = {a: [r for r in rows if r.ended_at >= now - length]
                      for a, rows in sent.items()}  # fmt: skip
            everyone = [r for rows in inside.values() for r in rows]
            for name, rows in (*inside.items(), ("*", everyone)):
                want = sums(rows)
                have = figures(got[name, window])
                assert abs(have.pop("cost_usd") - want.pop("cost_usd")) < 1e-9
                assert have == want, (name, window)
                assert got[name, window]["state"] == "ok"
        assert got["alice", "5h"]["turns"] == 3 and got["alice", "7d"]["turns"] == 5

        one = usage_json(hive, "bob", "--window", "7d")
        assert [(r["agent"], r["window"], r["turns"]) for r in one] == [("bob", "7d", 2)]
        table = hive.cli("usage", "alice")
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split()[:4] == ["AGENT", "WINDOW", "TURNS", "TOKENS"]
        assert [line.split()[:3] for line in table.stdout.splitlines()[1:]] == [
            ["alice", "5h", "3"], ["alice", "7d", "5"],
        ]  # fmt: skip
        unknown = hive.cli("usage", "zed")
        assert unknown.returncode == 1 and "[unknown_agent]" in unknown.stderr
        bad = hive.cli("usage", "--window", "3h")
        assert bad.returncode == 2 and "--window" in bad.stderr


async def test_a_budget_reached_holds_the_agent_until_the_operator_approves() -> None:
    with running_hive({"HIVE_BUDGET_TOKENS_5H": "10000"}) as hive:
        assert hive.cli("stop", "hm1nd").returncode == 0  # the test reads the manager's inbox
        hive.spawn_idle("alice")
        assert hive.cli("send", "alice", "are you there?").returncode == 0
        async with (
            HiveClient(hive.agent_sock("alice")) as alice,
            HiveClient(hive.manager_sock) as manager,
        ):
            over = turn("big", 0, 8)  # 8,000 + 807 + 4,000 tokens: past 10,000
            await report(alice, over)
            held = await alice.call(rq.Recv(cmd="recv", wait_seconds=0, max=10), rs.Messages)
            assert held.messages == []
            pending = json.loads(hive.cli("pending", "--json").stdout)
            (approval,) = [a for a in pending if a["kind"] == "budget"]
            assert (approval["agent"], approval["requester"]) == ("alice", "hive")
            assert "approve to allow another 2,500 tokens in 5h" in approval["reason"]
            news = await manager.call(rq.Recv(cmd="recv", wait_seconds=0, max=10), rs.Messages)
            events = [m.event for m in news.messages]
            assert [(e.kind, e.hard) for e in events if isinstance(e, helper.BudgetReached)] == [
                ("budget_reached", True)
            ]
            rows = {r["window"]: r for r in usage_json(hive, "alice")}
            assert (rows["5h"]["state"], rows["5h"]["limit_tokens"]) == ("over", 10_000)

            approved = hive.cli("approve", str(approval["id"]))
            assert approved.returncode == 0, approved.stderr
            assert "raised alice's budget by 5,307 tokens in 5h" in approved.stdout
            assert hive.cli("approve", str(approval["id"])).returncode == 1  # only once
            got = await alice.call(rq.Recv(cmd="recv", wait_seconds=10, max=10), rs.Messages)
            assert [m.body for m in got.messages] == ["are you there?"]
            rows = {r["window"]: r for r in usage_json(hive, "alice")}
            assert (rows["5h"]["state"], rows["5h"]["limit_tokens"]) == ("warning", 15_307)
