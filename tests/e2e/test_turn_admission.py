"""Turn admission with real turns: a turn beyond `HIVE_TURN_SLOTS` waits (`waiting`) until a
place frees; a turn whose claude is up frees its start place; a killed harness gives its
place back; a cancel of a waiting turn keeps its messages."""

from __future__ import annotations

import os
import signal
import threading

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import AgentInfo
from tests.e2e.dashboard import session, stream
from tests.e2e.hive import Hive, running_hive, wait_until_dead
from tests.e2e.turns import control, hive_with, operator_send, turn_rows, turns_done, wait_state
from tests.fake_anthropic import Reply, Script, Seen, text


def _holding(name: str, release: threading.Event) -> tuple[list[str], Script]:
    """A script that holds `name`'s first request until `release`, and records each request's
    agent in order."""
    order: list[str] = []
    held = False

    def script(seen: Seen) -> Reply:
        nonlocal held
        agent = seen.agent() or "?"
        order.append(agent)
        reply = text(f"{agent} done")
        if agent == name and not held:
            held = True
            reply.hold = release
        return reply

    return order, script


async def _info(hive: Hive, name: str) -> AgentInfo:
    async with hive.client() as op:
        agents = (await op.call(rq.List(cmd="list"), rs.Agents)).agents
    return next(a for a in agents if a.name == name)


async def test_a_turn_beyond_the_slots_waits_and_a_cancel_keeps_its_message() -> None:
    release = threading.Event()
    order, script = _holding("one", release)
    with hive_with(script, HIVE_TURN_SLOTS="1") as (hive, fake):
        for name in ("one", "two"):
            assert hive.cli("spawn", name).returncode == 0
        try:
            await operator_send(hive, "one", "take your time")
            fake.wait_for(lambda seen: any(s.agent() == "one" for s in seen), "one's turn")
            async with session(hive) as web, stream(web, "container_state_changed") as frames:
                sent = await operator_send(hive, "two", "my turn next")
                await frames.until(
                    "container_state_changed", agent__name="two", agent__turn_state="waiting"
                )  # the dashboard hears it
            await wait_state(hive, "two", "waiting")
            detail = await control(hive, "two", rq.Cancel(cmd="cancel"))
            assert "had not started" in detail and "stay queued" in detail
            await wait_state(hive, "two", "waiting")  # its message is still to be handled
            assert not any(s.agent() == "two" for s in fake.seen)
        finally:
            release.set()
        await turns_done(hive, "two", 1)
        assert order.index("two") > order.index("one")
        assert [r["result_kind"] for r in turn_rows(hive, "two")] == ["success"]
        prompt = fake.requests_of("two")[0].last_user_text()
        assert f"message {sent}\n" in prompt and prompt.count("my turn next") == 1


async def test_a_turn_whose_claude_is_up_frees_its_start_place() -> None:
    release = threading.Event()
    _, script = _holding("one", release)
    with hive_with(script, HIVE_TURN_SLOTS="5", HIVE_TURN_STARTS="1") as (hive, fake):
        for name in ("one", "two"):
            assert hive.cli("spawn", name).returncode == 0
        try:
            await operator_send(hive, "one", "take your time")
            fake.wait_for(lambda seen: any(s.agent() == "one" for s in seen), "one's turn")
            await operator_send(hive, "two", "meanwhile")
            await turns_done(hive, "two", 1)  # one still holds its place, not its start place
            assert (await _info(hive, "one")).turn_state == "thinking"
        finally:
            release.set()
        await turns_done(hive, "one", 1)


async def test_a_killed_harness_gives_its_place_back() -> None:
    release = threading.Event()
    _, script = _holding("one", release)
    try:
        with hive_with(script, HIVE_TURN_SLOTS="1") as (hive, fake):
            for name in ("one", "two"):
                assert hive.cli("spawn", name).returncode == 0
            await operator_send(hive, "one", "take your time")
            fake.wait_for(lambda seen: any(s.agent() == "one" for s in seen), "one's turn")
            await operator_send(hive, "two", "after one")
            await wait_state(hive, "two", "waiting")
            pid = (await _info(hive, "one")).pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await wait_until_dead(pid)
            await turns_done(hive, "two", 1)
    finally:
        release.set()


async def test_harnesses_run_below_hive_core_s_cpu_priority() -> None:
    with running_hive() as hive:
        assert hive.cli("spawn", "low").returncode == 0
        pid = (await _info(hive, "low")).pid
        assert pid is not None and hive.proc is not None
        daemon = os.getpriority(os.PRIO_PROCESS, hive.proc.pid)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(daemon + 5, 19)
