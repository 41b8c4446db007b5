"""The turn controls on the CLI, each against a real harness running the real claude CLI on
the scripted fake API: logs (and -f), cancel, new-session, compact, model, threads."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.e2e.hive import Hive
from tests.e2e.turns import hive_with, operator_send, turn_rows, turns_done, wait_state
from tests.fake_anthropic import Reply, Seen, text, tool_use

FOLLOW_BOUND = 60.0


def script(seen: Seen) -> Reply:
    if seen.is_compaction():
        return text("<analysis>a</analysis><summary>we talked</summary>")
    if seen.last_tool_results():
        return text("all done")
    # The items, not the lines of a cancelled turn the prompt may name before them.
    last = seen.last_user_text().partition("## Item ")[2]
    if "wait for mail" in last:
        return tool_use("mcp__hyperhive__recv", {"wait_seconds": 170})
    if "report" in last:
        return tool_use("mcp__hyperhive__send", {"to": "operator", "body": "reported"})
    return text("ok")


def ok(hive: Hive, *args: str) -> str:
    done = hive.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_logs_show_a_turn_and_follow_the_next_one_as_it_happens() -> None:
    with hive_with(script) as (hive, _fake):
        ok(hive, "spawn", "alice")
        await operator_send(hive, "alice", "please report")
        await turns_done(hive, "alice", 1)
        shown = ok(hive, "logs", "alice")
        for expected in ("── turn", "woken by operator", "→ mcp__hyperhive__send operator",
                         "all done", "turn ended success"):  # fmt: skip
            assert expected in shown, (expected, shown)
        as_json = [json.loads(line) for line in ok(hive, "logs", "alice", "--json").splitlines()]
        assert as_json[0]["event"]["kind"] == "turn_started"
        assert len(ok(hive, "logs", "alice", "-n", "2").splitlines()) == 2
        raw = ok(hive, "logs", "alice", "--raw", "-n", "5").splitlines()
        assert 0 < len(raw) <= 5

        follow = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hive_core", "logs", "alice", "-f", "-n", "1",
            env=hive.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert follow.stdout is not None
        try:
            async with asyncio.timeout(FOLLOW_BOUND):
                first = await follow.stdout.readline()
                assert first, "logs -f printed nothing"
                await operator_send(hive, "alice", "say ok")
                lines: list[str] = []
                while "turn ended" not in (line := (await follow.stdout.readline()).decode()):
                    assert line, "logs -f ended"
                    lines.append(line)
            assert any("── turn" in line for line in lines) and any("ok" in line for line in lines)
        finally:
            follow.terminate()
            await follow.wait()


async def test_cancel_new_session_compact_and_model_from_the_cli() -> None:
    with hive_with(script) as (hive, fake):
        ok(hive, "spawn", "bob")
        shown = ok(hive, "model", "bob")
        assert "bob:" in shown and "choices: opus, sonnet, haiku" in shown
        assert "model set to claude-cli-1" in ok(hive, "model", "bob", "claude-cli-1")
        listed = {a["name"]: a for a in json.loads(ok(hive, "list", "--json"))}
        assert listed["bob"]["model"] == "claude-cli-1"
        assert "bob: claude-cli-1" in ok(hive, "model", "bob")

        await operator_send(hive, "bob", "wait for mail")
        await wait_state(hive, "bob", "tool")
        assert "cancelling" in ok(hive, "cancel", "bob")
        state = await turns_done(hive, "bob", 1)
        assert state.last_result == "cancelled"
        assert fake.requests_of("bob")[0].body["model"] == "claude-cli-1"

        assert "new session" in ok(hive, "new-session", "bob")
        await operator_send(hive, "bob", "hello")
        await turns_done(hive, "bob", 2)
        assert [r["new_session"] for r in turn_rows(hive, "bob")] == [0, 1]
        told = fake.requests_of("bob")[-1].last_user_text()
        assert "## Your previous turn was cancelled" in told and "\nwait for mail\n" in told
        assert "counted as handled" in ok(hive, "logs", "bob")

        assert "compacted" in ok(hive, "compact", "bob")
        before = len(fake.requests_of("bob"))
        await operator_send(hive, "bob", "after compaction")
        await turns_done(hive, "bob", 3)
        later = fake.requests_of("bob")[before:]
        assert [r.is_compaction() for r in later][:1] == [True], "no compaction ran first"
        assert "we talked" in later[-1].raw, "the turn did not continue the compacted session"
        assert "compacting the session" in ok(hive, "logs", "bob")

        refused = hive.cli("cancel", "zed")
        assert refused.returncode == 1 and "no agent named 'zed'" in refused.stderr
        assert hive.cli("stop", "bob").returncode == 0
        stopped = hive.cli("new-session", "bob")
        assert stopped.returncode == 1 and "bob is not running" in stopped.stderr
        bad = hive.cli("logs", "bob", "-n", "0")
        assert bad.returncode == 1 and "--lines" in bad.stderr


async def test_threads_lists_the_open_approvals_and_questions(hive: Hive) -> None:
    hive.spawn_idle("alice")
    assert hive.cli("request-spawn", "carol").returncode == 0
    shown = ok(hive, "threads")
    assert "spawn" in shown and "carol" in shown and "pending reminders: 0" in shown
    mine = json.loads(ok(hive, "threads", "carol", "--json"))
    assert [a["agent"] for a in mine["approvals"]] == ["carol"]
    assert json.loads(ok(hive, "threads", "alice", "--json")) == {"approvals": [], "questions": []}
