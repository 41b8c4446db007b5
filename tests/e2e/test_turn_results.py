"""How turns end: API errors, context overflow, max turns, cancel; and the login report."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from hive_share import requests as rq
from tests.e2e.hive import wait_until_dead
from tests.e2e.turns import (
    control,
    hive_with,
    operator_send,
    state_dir,
    turn_rows,
    turns_done,
    wait_state,
    write_agent_toml,
)
from tests.fake_anthropic import Reply, Seen, error, text, tool_use

PTL = "prompt is too long: 250000 tokens > 200000 maximum"


class Errors:
    """Each agent gets the failure its name asks for."""

    def __init__(self) -> None:
        self.ptl_left = 1
        self.compaction_failures_left = 1

    def __call__(self, seen: Seen) -> Reply:
        agent = seen.agent()
        if agent == "e401":
            return error(401, "authentication_error", "invalid x-api-key")
        if agent == "e429":
            return error(429, "rate_limit_error", "slow down")
        if agent == "e529":
            return error(529, "overloaded_error", "Overloaded")
        if seen.is_compaction():  # only ptl overflows; the CLI's own compaction fails once
            if self.compaction_failures_left:
                self.compaction_failures_left -= 1
                return error(500, "api_error", "compaction backend down")
            return text("<analysis>a</analysis><summary>we talked</summary>")
        if agent == "ptl":
            if "a very long story" in seen.last_user_text() and self.ptl_left:
                self.ptl_left -= 1
                return error(400, "invalid_request_error", PTL)
            return text("recovered")
        if agent == "maxt":
            return tool_use("mcp__hyperhive__whoami", {})
        if agent == "slow":
            if seen.last_tool_results():
                return text("interrupted?")
            return tool_use("mcp__hyperhive__recv", {"wait_seconds": 170})
        return text("ok")


async def test_api_errors_are_classified_and_a_401_reports_needs_login() -> None:
    with hive_with(Errors()) as (hive, _):
        names = ["e401", "e429", "e529", "unreach"]
        for name in names:
            assert hive.cli("spawn", name).returncode == 0
        write_agent_toml(hive, "unreach", 'env = { ANTHROPIC_BASE_URL = "http://127.0.0.1:1" }\n')
        for name in names:
            await operator_send(hive, name, "hello")
        for name in names:
            await turns_done(hive, name, 1)
        kinds = {name: turn_rows(hive, name)[0]["result_kind"] for name in names}
        assert kinds == {
            "e401": "auth_error",
            "e429": "rate_limited",
            "e529": "overloaded",
            "unreach": "unreachable",
        }
        listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
        assert listed["e401"]["login"] == "needs_login"
        assert listed["e429"]["login"] == "logged_in"


async def test_prompt_too_long_compacts_then_retries_once() -> None:
    with hive_with(Errors()) as (hive, fake):
        assert hive.cli("spawn", "ptl").returncode == 0
        await operator_send(hive, "ptl", "some history first")
        await turns_done(hive, "ptl", 1)
        await operator_send(hive, "ptl", "a very long story")
        await turns_done(hive, "ptl", 2)
        first, second = turn_rows(hive, "ptl")
        assert (first["result_kind"], first["attempts"]) == ("success", 1)
        assert (second["result_kind"], second["attempts"]) == ("success", 2)
        # Compaction requests carry no role prompt; this daemon's only busy agent is ptl:
        # its first turn, the overflow, the CLI's own compaction (failing), ours, the retry.
        assert [r.is_compaction() for r in fake.seen] == [False, False, True, True, False]
        assert "we talked" in fake.seen[-1].raw, "the retry did not continue the compacted session"
        assert "a very long story" in fake.seen[-1].raw


async def test_max_turns_ends_the_turn_as_max_turns() -> None:
    with hive_with(Errors()) as (hive, _):
        assert hive.cli("spawn", "maxt").returncode == 0
        write_agent_toml(hive, "maxt", "max_turns = 1\n")
        await operator_send(hive, "maxt", "loop forever")
        await turns_done(hive, "maxt", 1)
        assert turn_rows(hive, "maxt")[0]["result_kind"] == "max_turns"


async def test_cancel_mid_tool_ends_the_turn_as_cancelled() -> None:
    with hive_with(Errors()) as (hive, _):
        assert hive.cli("spawn", "slow").returncode == 0
        await operator_send(hive, "slow", "wait for mail")
        await wait_state(hive, "slow", "tool")
        assert "cancelling" in await control(hive, "slow", rq.Cancel(cmd="cancel"))
        state = await turns_done(hive, "slow", 1)
        assert state.last_result == "cancelled"
        (row,) = turn_rows(hive, "slow")
        assert row["result_kind"] == "cancelled"
        assert row["duration_ms"] < 60_000
        # The cancelled item was handled: the next message starts a fresh turn.
        await operator_send(hive, "slow", "and now?")
        await wait_state(hive, "slow", "tool")
        await control(hive, "slow", rq.Cancel(cmd="cancel"))
        await turns_done(hive, "slow", 2)


def _processes_in(directory: Path) -> list[int]:
    """Pids whose working directory is `directory` (claude runs in the agent's state dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/cwd") == str(directory):
                    pids.append(int(entry))
    return pids


async def test_killing_an_agent_mid_turn_takes_its_claude_down_too() -> None:
    with hive_with(Errors()) as (hive, _):
        assert hive.cli("spawn", "slow").returncode == 0
        listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
        harness_pid = listed["slow"]["pid"]
        await operator_send(hive, "slow", "wait for mail")
        await wait_state(hive, "slow", "tool")
        workers = [p for p in _processes_in(state_dir(hive, "slow")) if p != harness_pid]
        assert workers, "no claude process found in the agent's state dir"
        assert hive.cli("kill", "slow").returncode == 0
        for pid in workers:
            await wait_until_dead(pid)


async def test_a_message_too_long_for_one_argument_reaches_claude_whole() -> None:
    with hive_with(lambda seen: text("read it")) as (hive, fake):
        assert hive.cli("spawn", "big").returncode == 0
        body = "".join(f"line {i:06d} of a long report\n" for i in range(6000))
        assert len(body.encode()) > 150_000
        await operator_send(hive, "big", body)
        state = await turns_done(hive, "big", 1)
        assert state.last_result == "success"
        assert body.rstrip("\n") in fake.requests_of("big")[0].last_user_text()
