"""SIGTERM and destroy are quick, quiet, and lose nothing that was acknowledged."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.names import MANAGER_NAME
from tests.e2e.hive import Hive
from tests.e2e.turns import hive_with, operator_send, turns_done, wait_state
from tests.fake_anthropic import Reply, Seen, text

IDLE_AGENTS = [f"idle{i}" for i in range(9)]
BUSY_AGENTS = ["busy1", "busy2", "busy3"]


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
