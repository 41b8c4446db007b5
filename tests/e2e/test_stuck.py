"""Stuck signals end to end, with the real claude CLI against the scripted fake Messages API:
a model that repeats one call, a turn that hangs in a slow tool, and two agents bouncing
messages each raise one attention item, the manager is told once, and the item's action
(cancel, stop) clears it; the dashboard's stream carries each change."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from hive_share import live
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.dashboard import Frames, act, session, stream
from tests.e2e.hive import Hive, short_tmp
from tests.e2e.turns import hive_with, operator_send
from tests.fake_anthropic import Reply, Script, Seen, text, tool_use

Items = list[dict[str, Any]]


async def attention_until(frames: Frames, holds: Callable[[Items], bool]) -> Items:
    """The items of the next `attention_changed` frame for which `holds` is true (bounded
    by the stream client's timeout)."""
    while True:
        frame = await frames.next()
        event = frame["event"]
        if event["kind"] == "attention_changed" and holds(event["items"]):
            items: Items = event["items"]
            return items


def of_kind(items: Items, kind: str) -> Items:
    return [i for i in items if i["kind"] == kind]


def told_manager(hive: Hive, signal: str) -> list[str]:
    """The `stuck` helper events hive-core sent the manager for `signal`."""
    db = sqlite3.connect(f"file:{hive.state_dir / 'hive.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT body FROM messages WHERE recipient = 'hm1nd' AND sender = 'hive' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows if f"looks stuck ({signal})" in r[0]]


async def page_signals(hive: Hive, name: str, signal: str) -> bool:
    """Whether `name`'s harness emitted a `stuck_changed` event naming `signal` (its page's
    badge), following its events (bounded by each long-poll)."""
    after = 0
    async with HiveClient(hive.harness_sock(name)) as h:
        for _ in range(20):
            got = await h.call(
                rq.Events(cmd="events", after=after, wait_seconds=5.0), rs.TurnEvents
            )
            for row in got.events:
                after = max(after, row.seq)
                if isinstance(row.event, live.StuckChanged) and signal in row.event.signals:
                    return True
    return False


def repeats_whoami(seen: Seen) -> Reply:
    """alice calls whoami again and again with the same input; everyone else says ok."""
    if seen.agent() == "alice":
        return tool_use("mcp__hyperhive__whoami", {})
    return text("ok")


async def test_a_model_repeating_one_call_raises_one_item_and_cancel_clears_it() -> None:
    with hive_with(repeats_whoami, HIVE_STUCK_REPEAT="3") as (hive, fake):
        assert hive.cli("spawn", "alice").returncode == 0
        async with session(hive) as client, stream(client) as frames:
            await operator_send(hive, "alice", "who are you?")
            items = await attention_until(frames, lambda i: bool(of_kind(i, "stuck_repetition")))
            (item,) = of_kind(items, "stuck_repetition")
            assert item["agent"] == "alice" and "called 3 times" in item["summary"]
            assert "hive-core cancel alice" in item["action"]
            # The model goes on repeating: still one item, and the manager told once.
            fake.wait_for(lambda seen: sum(s.agent() == "alice" for s in seen) >= 6, "6 calls")
            listed = json.loads(hive.cli("attention", "--json").stdout)
            assert len(of_kind(listed, "stuck_repetition")) == 1
            assert len(told_manager(hive, "repetition")) == 1
            rows = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
            assert rows["alice"]["stuck"] == ["stuck_repetition"]
            # The item's action, as the dashboard's button posts it.
            await act(client, "/api/agents/alice/cancel")
            await attention_until(frames, lambda i: not of_kind(i, "stuck_repetition"))
        rows = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
        assert rows["alice"]["stuck"] == []


def blocks_in_bash(gate: Path) -> Script:
    """alice runs a Bash command that blocks on the FIFO `gate` until the test opens it: a
    slow tool, for as long as the test says."""

    def script(seen: Seen) -> Reply:
        if seen.agent() == "alice" and not seen.last_tool_results():
            return tool_use("Bash", {"command": f"cat {gate}", "timeout": 600000})
        return text("ok")

    return script


@contextmanager
def gate() -> Iterator[Path]:
    """A FIFO a reader blocks on until this context ends (it then opens and closes the
    writing end: the reader sees the end of the file)."""
    root = short_tmp()
    path = root / "gate"
    os.mkfifo(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):  # no reader left (the turn was cancelled): fine
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        shutil.rmtree(root, ignore_errors=True)


async def test_a_turn_hanging_in_a_slow_tool_raises_no_progress() -> None:
    # 0.05 minutes: three seconds without a new tool call or text.
    with (
        gate() as fifo,
        hive_with(blocks_in_bash(fifo), HIVE_STUCK_NO_PROGRESS_MINUTES="0.05") as (hive, _),
    ):
        assert hive.cli("spawn", "alice").returncode == 0
        async with session(hive) as client, stream(client) as frames:
            await operator_send(hive, "alice", "wait a while")
            items = await attention_until(frames, lambda i: bool(of_kind(i, "stuck_no_progress")))
            (item,) = of_kind(items, "stuck_no_progress")
            assert item["agent"] == "alice"
            assert len(told_manager(hive, "no progress")) == 1
            assert hive.cli("cancel", "alice").returncode == 0
            await attention_until(frames, lambda i: not of_kind(i, "stuck_no_progress"))


def bounce(seen: Seen) -> Reply:
    """alice and bob answer every message by sending one to the other."""
    peer = {"alice": "bob", "bob": "alice"}.get(seen.agent() or "")
    if peer is None or seen.last_tool_results():
        return text("sent")
    return tool_use("mcp__hyperhive__send", {"to": peer, "body": "your turn"})


async def test_two_agents_bouncing_messages_raise_ping_pong_and_stop_clears_it() -> None:
    with hive_with(bounce, HIVE_PING_PONG_MESSAGES="4") as (hive, _):
        for name in ("alice", "bob"):
            assert hive.cli("spawn", name).returncode == 0
        client: httpx.AsyncClient
        async with session(hive) as client, stream(client) as frames:
            async with hive.client(hive.manager_sock) as mgr:  # not the operator: no say
                await mgr.call(rq.Send(cmd="send", to="alice", body="talk to bob"), rs.Sent)
            items = await attention_until(frames, lambda i: bool(of_kind(i, "ping_pong")))
            (item,) = of_kind(items, "ping_pong")
            assert {item["agent"], *item["summary"].split()} >= {"alice", "bob"}
            assert len(told_manager(hive, "ping pong")) == 1
            # hive-core tells bob's harness too: its page's badge.
            assert await page_signals(hive, "bob", "ping_pong")
            assert hive.cli("stop", "alice").returncode == 0
            await attention_until(frames, lambda i: not of_kind(i, "ping_pong"))
        assert hive.cli("stop", "bob").returncode == 0
