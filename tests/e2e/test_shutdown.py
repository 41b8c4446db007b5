"""SIGTERM and destroy are quick, quiet, and lose nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ConnectionLost, HiveClient, RemoteError
from hive_share.framing import INT64_MAX
from hive_share.names import MANAGER_NAME
from tests.e2e.dashboard import STREAM_BOUND, Frames, session, stream, ticket
from tests.e2e.hive import Hive
from tests.e2e.turns import hive_with, operator_send, turns_done, wait_state
from tests.fake_anthropic import Reply, Seen, text

IDLE_AGENTS = [f"idle{i}" for i in range(9)]
BUSY_AGENTS = ["busy1", "busy2", "busy3"]
LONG_POLLS = 50
STREAMS = 20
LOG_STREAMS = 2
SENDERS = 4
SENT_BEFORE_SIGTERM = 25
"""Sends each sender has had acknowledged before the SIGTERM: the load is on."""
EXIT_BOUND = 2.0 + 0.5
"""The shutdown bound (docs/sockets.md) and a margin for the interpreter's exit."""


def _clean_log(hive: Hive) -> None:
    log = hive.log_path.read_text(errors="replace")
    at = max(log.find("Traceback"), log.find("CancelledError"))
    assert at < 0, log[max(0, at - 300) : at + 3000]


@pytest.mark.slow
async def test_sigterm_with_idle_and_mid_turn_agents_exits_without_waiting_out_a_grace() -> None:
    release = threading.Event()

    def script(seen: Seen) -> Reply:
        reply = text("done")
        if seen.agent() in BUSY_AGENTS and not release.is_set():
            reply.hold = release  # held until after the restart
        return reply

    with hive_with(script) as (hive, fake):
        for name in IDLE_AGENTS + BUSY_AGENTS:
            assert hive.cli("spawn", name).returncode == 0, name
        for name in IDLE_AGENTS[:3]:  # agents that worked and went idle again
            await operator_send(hive, name, f"for {name}")
            await turns_done(hive, name, 1)
        for name in BUSY_AGENTS:
            await operator_send(hive, name, f"work for {name}")
        for name in BUSY_AGENTS:
            await wait_state(hive, name, "thinking")
        fake.wait_for(
            lambda seen: {s.agent() for s in seen} >= set(BUSY_AGENTS), "every busy agent's request"
        )
        async with hive.client() as host:
            await host.call(rq.Send(cmd="send", to="busy1", body="queued behind"), rs.Sent)

        assert hive.proc is not None
        started = time.monotonic()
        code = await asyncio.to_thread(hive.stop)
        took = time.monotonic() - started

        assert code == 0
        log = hive.log_path.read_text(errors="replace")
        # The shortest grace the drain could wait out is 5 s (open requests); the held turns
        # must not make it wait at all. Unloaded it takes well under a second.
        assert took < 5.0, f"SIGTERM took {took:.2f}s: {log[log.index('shutting down') - 30 :]}"
        _clean_log(hive)

        release.set()
        hive.start()
        for name in BUSY_AGENTS:
            await turns_done(hive, name, 1)  # the interrupted turn's items come back
        busy1 = fake.requests_of("busy1")[-1].last_user_text()
        assert "work for busy1" in busy1 and "queued behind" in busy1
        for name in IDLE_AGENTS[:3]:  # what they acknowledged is not handed out again
            async with hive.client(hive.harness_sock(name)) as h:
                state = await h.call(rq.TurnStatus(cmd="turn_status"), rs.HarnessState)
            assert state.turns_run == 0


async def test_destroy_of_a_running_agent_does_not_wait_out_the_stop_grace(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    started = time.monotonic()
    done = await asyncio.to_thread(hive.cli, "destroy", "alice")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    # Not the 10 s grace a harness gets on `stop`: destroy kills it. Unloaded, well under 1 s.
    assert took < 5.0, f"destroy took {took:.2f}s"
    _clean_log(hive)


async def test_sigterm_does_not_wait_for_a_claude_that_ignores_sigint(idle_hive: Hive) -> None:
    started_fifo = idle_hive.root / "started"
    os.mkfifo(started_fifo)
    stubborn = idle_hive.root / "claude"
    stubborn.write_text(f"#!/bin/sh\ntrap '' INT\necho started > {started_fifo}\nexec sleep 600\n")
    stubborn.chmod(0o755)
    idle_hive.extra_env.update(HIVE_CLAUDE_BIN=str(stubborn), ANTHROPIC_API_KEY="sk-test")
    idle_hive.start()
    assert idle_hive.cli("spawn", "alice").returncode == 0
    await operator_send(idle_hive, "alice", "work")
    async with asyncio.timeout(60):  # the stand-in claude is running and ignores SIGINT
        assert (await asyncio.to_thread(started_fifo.read_text)).strip() == "started"

    started = time.monotonic()
    code = await asyncio.to_thread(idle_hive.stop)
    took = time.monotonic() - started

    assert code == 0
    assert took <= 2.0, f"SIGTERM took {took:.2f}s"
    _clean_log(idle_hive)


async def test_a_harness_stopped_while_it_warms_up_does_not_wait_out_its_page(
    idle_hive: Hive,
) -> None:
    # READY comes once the manager's harness is up; it then imports its page's web stack
    # and the MCP SDK for most of a second, and the SIGTERM lands in the middle of that.
    idle_hive.start()
    assert idle_hive.stop() == 0
    log = (idle_hive.state_dir / "agents" / MANAGER_NAME / "harness.log").read_text()
    assert "stopping" in log
    assert "did not close" not in log, log


class Acked:
    """What the senders were told is stored; lets the test wait for enough of it."""

    def __init__(self) -> None:
        self.bodies: dict[int, str] = {}
        self.per_sender: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def add(self, who: str, msg_id: int, body: str) -> None:
        async with self._changed:
            self.bodies[msg_id] = body
            self.per_sender[who] = self.per_sender.get(who, 0) + 1
            self._changed.notify_all()

    async def each_reach(self, senders: list[str], n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: all(self.per_sender.get(who, 0) >= n for who in senders)
            )


async def _keep_sending(client: HiveClient, who: str, acked: Acked) -> str:
    """Send to `sink` until hive-core stops answering; returns how it ended."""
    count = 0
    while True:
        body = f"{who}-{count}"
        try:
            got = await client.call(rq.Send(cmd="send", to="sink", body=body), rs.Sent)
        except ConnectionLost:
            return "closed"
        except RemoteError as exc:
            return exc.code
        await acked.add(who, got.id, body)
        count += 1


async def _long_poll(client: HiveClient, operator: bool) -> rs.Response:
    await client.call(rq.Ping(cmd="ping"), rs.Pong)  # connected and served
    if operator:  # nothing is ever above INT64_MAX - 1: it waits its whole wait_seconds
        return await client.request(rq.Inbox(cmd="inbox", wait_seconds=170, after=INT64_MAX - 1))
    return await client.request(rq.Recv(cmd="recv", wait_seconds=170))


async def _to_the_end(frames: Frames) -> str:
    """Read a dashboard event stream until it ends; the kind of its last frame."""
    last = ""
    with contextlib.suppress(AssertionError):  # Frames.next: "the event stream ended"
        while True:
            last = (await frames.next())["event"]["kind"]
    return last


@contextlib.asynccontextmanager
async def _log_follow(web: httpx.AsyncClient, name: str) -> AsyncIterator[AsyncIterator[str]]:
    """An open `/api/agents/NAME/log/stream`: its lines."""
    path = f"/api/agents/{name}/log/stream"
    params = {"ticket": await ticket(web)}
    async with web.stream("GET", path, params=params, timeout=STREAM_BOUND) as response:
        assert response.status_code == 200, await response.aread()
        yield response.aiter_lines()


async def _lines_to_the_end(lines: AsyncIterator[str]) -> int:
    """Read a log stream until it ends cleanly (a cut one raises); its data lines."""
    return len([line async for line in lines if line.startswith("data:")])


async def test_sigterm_under_load_exits_within_two_seconds_and_keeps_what_it_acknowledged(
    hive: Hive,
) -> None:
    hive.spawn_idle("poll1", "poll2", "sink")
    pollers = [hive.agent_sock("poll1"), hive.agent_sock("poll2"), hive.host_sock]
    senders = [f"sender{i}" for i in range(SENDERS)]
    acked = Acked()
    async with contextlib.AsyncExitStack() as stack:
        web = await stack.enter_async_context(session(hive))
        streams = [
            asyncio.create_task(_to_the_end(await stack.enter_async_context(stream(web))))
            for _ in range(STREAMS)
        ]
        logs = [  # these never end on their own
            asyncio.create_task(
                _lines_to_the_end(await stack.enter_async_context(_log_follow(web, MANAGER_NAME)))
            )
            for _ in range(LOG_STREAMS)
        ]
        polls = []
        for i in range(LONG_POLLS):
            path = pollers[i % len(pollers)]
            client = await stack.enter_async_context(hive.client(path))
            polls.append(asyncio.create_task(_long_poll(client, path == hive.host_sock)))
        sending = [
            asyncio.create_task(
                _keep_sending(await stack.enter_async_context(hive.client()), who, acked)
            )
            for who in senders
        ]
        async with asyncio.timeout(30):
            await acked.each_reach(senders, SENT_BEFORE_SIGTERM)
        assert not any(t.done() for t in [*streams, *logs, *polls, *sending])

        assert hive.proc is not None
        hive.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(hive.proc.wait, EXIT_BOUND)
        except subprocess.TimeoutExpired:
            log = hive.log()
            raise AssertionError(
                f"still running {EXIT_BOUND}s after SIGTERM: {log[log.index('shutting down') :]}"
            ) from None
        assert code == 0
        async with asyncio.timeout(5):  # the process is gone: everything has ended
            ended = await asyncio.gather(*streams)
            followed = await asyncio.gather(*logs)
            answers = await asyncio.gather(*polls)
            stops = await asyncio.gather(*sending)

    assert ended == ["resync"] * STREAMS  # each page was told before its stream ended
    assert all(n >= 1 for n in followed)  # the tail, then a clean end
    assert [a.code if isinstance(a, rs.Error) else a for a in answers] == (
        ["shutting_down"] * LONG_POLLS
    )
    assert set(stops) <= {"closed", "shutting_down"}, stops
    _clean_log(hive)

    hive.start()
    db = sqlite3.connect(hive.state_dir / "hive.sqlite")
    stored = dict(db.execute("SELECT id, body FROM messages WHERE recipient = 'sink'"))
    db.close()
    lost = {i: body for i, body in acked.bodies.items() if stored.get(i) != body}
    assert not lost, f"{len(lost)} acknowledged sends are not stored: {list(lost.items())[:5]}"
