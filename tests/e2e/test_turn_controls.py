"""Sessions, models, queued items, cancel, extra MCP servers and a hostile stdout, with real
turns."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
from pathlib import Path

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.dashboard import Frames, session, stream
from tests.e2e.hive import Hive
from tests.e2e.turns import (
    REPO,
    control,
    hive_with,
    operator_send,
    state_dir,
    turn_rows,
    turns_done,
    write_agent_toml,
)
from tests.fake_anthropic import Reply, Seen, error, text, tool_use

WAIT_BOUND = 60.0


def all_user_text(seen: Seen) -> str:
    return json.dumps([m for m in seen.body["messages"] if m.get("role") == "user"])


async def test_new_session_drops_continue_for_exactly_one_turn() -> None:
    with hive_with(lambda seen: text("noted")) as (hive, fake):
        assert hive.cli("spawn", "fresh").returncode == 0
        for n, word in enumerate(["one", "two"], start=1):
            await operator_send(hive, "fresh", f"word {word}")
            await turns_done(hive, "fresh", n)
        assert "starts a new session" in await control(
            hive, "fresh", rq.NewSession(cmd="new_session")
        )
        for n, word in enumerate(["three", "four"], start=3):
            await operator_send(hive, "fresh", f"word {word}")
            await turns_done(hive, "fresh", n)
        requests = [all_user_text(s) for s in fake.requests_of("fresh")]
        assert "word one" in requests[1]  # --continue
        assert "word one" not in requests[2] and "word three" in requests[2]  # new session
        assert "word three" in requests[3] and "word one" not in requests[3]  # continues anew
        rows = turn_rows(hive, "fresh")
        assert [r["new_session"] for r in rows] == [0, 0, 1, 0]


async def test_a_model_switch_persists_across_a_harness_restart() -> None:
    with hive_with(lambda seen: text("ok")) as (hive, fake):
        assert hive.cli("spawn", "mod").returncode == 0
        await control(hive, "mod", rq.SetModel(cmd="set_model", model="claude-custom-model-1"))
        assert hive.cli("restart", "mod").returncode == 0
        await operator_send(hive, "mod", "which model?")
        await turns_done(hive, "mod", 1)
        assert fake.requests_of("mod")[0].body["model"] == "claude-custom-model-1"
        assert turn_rows(hive, "mod")[0]["model"] == "claude-custom-model-1"
        model_file = state_dir(hive, "mod") / "hyperhive-model"
        assert model_file.read_text().strip() == "claude-custom-model-1"


async def test_messages_arriving_mid_turn_are_all_handled_in_order() -> None:
    release = threading.Event()
    first = True

    def script(seen: Seen) -> Reply:
        nonlocal first
        if seen.agent() == "held" and first:
            first = False
            reply = text("working on it")
            reply.hold = release
            return reply
        return text("handled")

    with hive_with(script) as (hive, fake):
        assert hive.cli("spawn", "held").returncode == 0
        await operator_send(hive, "held", "first")
        fake.wait_for(lambda seen: len(seen) >= 1, "the first turn's request")
        for body in ("second", "third", "fourth"):
            await operator_send(hive, "held", body)
        release.set()
        state = await turns_done(hive, "held", 2)
        assert state.turns_run == 2
        last = fake.requests_of("held")[-1].last_user_text()
        positions = [last.index(f"\n{word}\n") for word in ("second", "third", "fourth")]
        assert positions == sorted(positions)
        assert "You have 3 new items" in last
        rows = turn_rows(hive, "held")
        assert [r["result_kind"] for r in rows] == ["success", "success"]


async def test_a_cancel_mid_turn_tells_the_next_turn_and_keeps_what_came_meanwhile() -> None:
    release = threading.Event()
    first = True

    def script(seen: Seen) -> Reply:
        nonlocal first
        if seen.agent() == "cut" and first:
            first = False
            reply = text("never seen")
            reply.hold = release
            return reply
        return text("handled")

    with hive_with(script) as (hive, fake):
        assert hive.cli("spawn", "cut").returncode == 0
        async with session(hive) as web, stream(web, "delivered") as frames:
            one = await operator_send(hive, "cut", "summarize the report\nsection two first")
            fake.wait_for(lambda seen: len(seen) >= 1, "the first turn's request")
            two = await operator_send(hive, "cut", "then file it")
            try:
                assert "cancelling" in await control(hive, "cut", rq.Cancel(cmd="cancel"))
                await turns_done(hive, "cut", 2)
            finally:
                release.set()
            delivered = await _delivered(frames, "cut", {one, two})
        assert sorted(delivered) == [one, two]  # each acknowledged once
        assert [r["result_kind"] for r in turn_rows(hive, "cut")] == ["cancelled", "success"]
        last = fake.requests_of("cut")[-1].last_user_text()
        notice, _, items = last.partition("## Item ")
        assert "## Your previous turn was cancelled" in notice
        assert f"- message {one} from operator (the human operator), first line" in notice
        assert "\nsummarize the report\n" in notice and "section two first" not in last
        assert "You have 1 new item" in last
        assert items.startswith(f"1 of 1: message {two}\n") and "\nthen file it\n" in items
        received = [
            [m["id"] for m in json.loads(data)["messages"]]
            for kind, data in _event_rows(hive, "cut")
            if kind == "messages_received"
        ]
        assert received == [[one], [two]]


async def test_a_cancel_while_a_failed_turn_waits_to_retry_keeps_its_messages() -> None:
    failed = False

    def script(seen: Seen) -> Reply:
        nonlocal failed
        if seen.agent() == "again" and not failed:
            failed = True
            return error(500, "api_error", "the backend is down")
        return text("handled")

    with hive_with(script) as (hive, fake):
        assert hive.cli("spawn", "again").returncode == 0
        async with session(hive) as web, stream(web, "delivered") as frames:
            one = await operator_send(hive, "again", "the waiting one")
            await _note(hive, "again", "turn failed (api_error); retrying in 10s")
            two = await operator_send(hive, "again", "queued after it")
            assert await control(hive, "again", rq.Cancel(cmd="cancel")) == (
                "cancelled the retry: its messages stay queued for the next turn"
            )
            await turns_done(hive, "again", 2)
            delivered = await _delivered(frames, "again", {one, two})
        assert sorted(delivered) == [one, two]
        assert [r["result_kind"] for r in turn_rows(hive, "again")] == ["api_error", "success"]
        last = fake.requests_of("again")[-1].last_user_text()
        assert "You have 2 new items" in last and "cancelled" not in last
        assert last.index("\nthe waiting one\n") < last.index("\nqueued after it\n")
        await _note(hive, "again", "retry cancelled by the operator: 1 item left queued")


async def _delivered(frames: Frames, recipient: str, ids: set[int]) -> list[int]:
    """The ids the broker reports delivered to `recipient`, until all of `ids` are."""
    seen: list[int] = []
    async with asyncio.timeout(WAIT_BOUND):
        while not ids <= set(seen):
            seen += (await frames.until("delivered", recipient=recipient))["event"]["ids"]
    return seen


async def _note(hive: Hive, name: str, start: str) -> None:
    """Wait (long-polls, bounded) for a note of the agent's that starts with `start`."""
    after = 0
    async with asyncio.timeout(WAIT_BOUND), HiveClient(hive.harness_sock(name)) as h:
        while True:
            got = await h.call(
                rq.Events(cmd="events", after=after, limit=1000, wait_seconds=8), rs.TurnEvents
            )
            for row in got.events:
                event = row.event
                if event.kind == "note" and event.text.startswith(start):
                    return
                after = max(after, row.seq)


async def test_an_extra_mcp_server_is_launched_and_only_its_allowed_tools_run() -> None:
    def script(seen: Seen) -> Reply:
        results = seen.last_tool_results()
        if not results:
            return tool_use("mcp__extra_srv__shout", {"text": "hi"})
        if "HI!" in json.dumps(results):
            return tool_use("mcp__extra_srv__whisper", {"text": "HI"})
        return text("done")

    with hive_with(script) as (hive, fake):
        assert hive.cli("spawn", "ext").returncode == 0
        server = REPO / "tests" / "extra_mcp_server.py"
        write_agent_toml(
            hive,
            "ext",
            f'[mcp_servers."extra.srv"]\ncommand = "{sys.executable}"\nargs = ["{server}"]\n'
            'allowed_tools = ["shout"]\n',
        )
        await operator_send(hive, "ext", "use your tools")
        await turns_done(hive, "ext", 1)
        requests = fake.requests_of("ext")
        assert {"mcp__extra_srv__shout", "mcp__extra_srv__whisper"} <= set(requests[0].tool_names())
        (shouted,) = requests[1].last_tool_results()
        assert "HI!" in json.dumps(shouted) and not shouted.get("is_error")
        (whispered,) = requests[2].last_tool_results()
        assert whispered.get("is_error") is True
        (row,) = turn_rows(hive, "ext")
        assert json.loads(row["tools"]) == {
            "mcp__extra_srv__shout": 1,
            "mcp__extra_srv__whisper": 1,
        }
        assert row["permission_denial_count"] == 1


async def test_hostile_stream_lines_do_not_stop_the_pump(tmp_path: Path) -> None:
    fake_claude = tmp_path / "claude"
    fake_claude.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO}/tests/fake_claude.py"\n')
    fake_claude.chmod(0o755)
    with hive_with(lambda seen: text("unused"), HIVE_CLAUDE_BIN=str(fake_claude)) as (hive, _):
        assert hive.cli("spawn", "pump").returncode == 0
        await operator_send(hive, "pump", "go")
        state = await turns_done(hive, "pump", 1)
        assert state.last_result == "success"
        kinds = _event_rows(hive, "pump")
        texts = [data for kind, data in kinds if kind == "text"]
        assert len(texts) == 2 and len(json.loads(texts[0])["text"]) == 5 * 1024 * 1024
        assert json.loads(texts[1])["text"] == "after"
        raws = [json.loads(data) for kind, data in kinds if kind == "raw"]
        assert [r["line_type"] for r in raws] == ["mystery_future_type"]
        notes = [json.loads(data)["text"] for kind, data in kinds if kind == "note"]
        assert any("not JSON" in n for n in notes)


def _event_rows(hive: Hive, name: str) -> list[tuple[str, str]]:
    db = sqlite3.connect(state_dir(hive, name) / "hyperhive-events.sqlite")
    try:
        return [(k, d) for k, d in db.execute("SELECT kind, data FROM events ORDER BY id")]
    finally:
        db.close()
