"""Helper events reach the right inbox: crashes, denied requests, login changes."""

from __future__ import annotations

import json
import os
import signal

import pytest

from hive_core import __version__ as hive_version
from hive_core import build_version
from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import Message
from tests.e2e.hive import Hive, wait_until_dead
from tests.e2e.turns import turns_done


async def manager_inbox(hive: Hive, wait: float) -> list[Message]:
    async with hive.client(hive.manager_sock) as manager:
        got = await manager.call(rq.Recv(cmd="recv", wait_seconds=wait), rs.Messages)
        if got.messages:
            await manager.call(rq.Ack(cmd="ack", ids=[m.id for m in got.messages]), rs.Acked)
    return list(got.messages)


def login_of(hive: Hive, name: str) -> str:
    listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    return str(listed[name]["login"])


def pid_of(hive: Hive, name: str) -> int:
    listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    pid = listed[name]["pid"]
    assert isinstance(pid, int)
    return pid


async def test_a_crash_tells_the_manager_once_and_an_operator_kill_does_not(hive: Hive) -> None:
    assert hive.cli("stop", "hm1nd").returncode == 0  # the test reads the manager's inbox
    for name in ("alice", "bob"):
        assert hive.cli("spawn", name).returncode == 0
    assert hive.cli("kill", "bob").returncode == 0
    victim = pid_of(hive, "alice")
    os.kill(victim, signal.SIGKILL)  # behind the daemon's back
    await wait_until_dead(victim)
    (crash,) = await manager_inbox(hive, wait=15)
    assert crash.sender == helper.HIVE_SENDER
    assert isinstance(crash.event, helper.ContainerCrash)
    assert crash.event.agent == "alice" and crash.event.restart_in_seconds == 5.0
    assert str(-signal.SIGKILL) in crash.event.detail
    # No second report, and none for bob, across more than one scan interval.
    assert await manager_inbox(hive, wait=11) == []
    listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    assert listed["alice"]["state"] == "running" and listed["alice"]["pid"] != victim
    assert listed["bob"]["state"] == "stopped"


async def test_a_denied_spawn_request_tells_the_manager_the_reason(hive: Hive) -> None:
    assert hive.cli("stop", "hm1nd").returncode == 0
    async with hive.client(hive.manager_sock) as manager:
        asked = await manager.call(
            rq.RequestSpawn(cmd="request_spawn", name="carl"), rs.ApprovalResult
        )
    assert hive.cli("deny", str(asked.approval.id), "--reason", "we have enough").returncode == 0
    (told,) = await manager_inbox(hive, wait=5)
    assert isinstance(told.event, helper.ApprovalResolved)
    assert (told.event.id, told.event.status, told.event.reason) == (
        asked.approval.id,
        "denied",
        "we have enough",
    )
    assert "was denied" in told.body


@pytest.mark.parametrize("state", ["needs_login", "logged_in"])
async def test_login_changes_reach_the_manager(hive: Hive, state: str) -> None:
    assert hive.cli("stop", "hm1nd").returncode == 0
    hive.spawn_idle("alice")
    async with hive.client(hive.agent_sock("alice")) as alice:
        await alice.call(
            rq.LoginState(cmd="login_state", state="needs_login", detail="401"), rs.Done
        )
        if state == "logged_in":
            await alice.call(rq.LoginState(cmd="login_state", state="logged_in"), rs.Done)
    told = await manager_inbox(hive, wait=5)
    kinds = [type(m.event).__name__ for m in told]
    expected = ["NeedsLogin"] if state == "needs_login" else ["NeedsLogin", "LoggedIn"]
    assert kinds == expected
    assert all(getattr(m.event, "agent", None) == "alice" for m in told)


def needs_update(hive: Hive, name: str) -> bool:
    listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    return bool(listed[name]["needs_update"])


async def test_a_harness_on_other_code_tells_the_manager_it_needs_a_rebuild(hive: Hive) -> None:
    """The build ids differ: another release, the same release from other files (a checkout
    edited since, another build), or a harness too old to send more than its release."""
    assert hive.cli("stop", "hm1nd").returncode == 0
    hive.spawn_idle("alice")  # its harness runs this checkout: nothing to tell
    assert not needs_update(hive, "alice")
    same_release = f"{hive_version}+{'0' * 16}"
    for version in ("0.0.1", same_release, hive_version):
        async with hive.client(hive.agent_sock("alice")) as alice:
            await alice.call(rq.Alive(cmd="alive", pid=os.getpid(), version=version), rs.Done)
        (told,) = await manager_inbox(hive, wait=5)
        assert isinstance(told.event, helper.NeedsUpdate)
        assert told.event.agent == "alice"
        assert f"its harness is {version}, hive-core is {build_version()}" in told.event.detail
        assert needs_update(hive, "alice"), version
    async with hive.client(hive.agent_sock("alice")) as alice:
        await alice.call(rq.Alive(cmd="alive", pid=os.getpid(), version=build_version()), rs.Done)
    assert await manager_inbox(hive, wait=1) == []
    assert not needs_update(hive, "alice")


async def test_a_missing_claude_is_told_apart_from_a_missing_login(idle_hive: Hive) -> None:
    idle_hive.extra_env["HIVE_CLAUDE_BIN"] = str(idle_hive.root / "no-such-claude")
    idle_hive.start()
    assert idle_hive.cli("stop", "hm1nd").returncode == 0
    assert idle_hive.cli("spawn", "alice").returncode == 0
    async with idle_hive.client() as host:
        await host.call(rq.Send(cmd="send", to="alice", body="hello"), rs.Sent)
    (told,) = await manager_inbox(idle_hive, wait=30)
    assert isinstance(told.event, helper.ClaudeMissing)
    assert told.event.agent == "alice"
    assert "no-such-claude" in told.event.detail
    assert "login" not in told.body
    assert "install it" in told.body and "HIVE_CLAUDE_BIN" in told.body
    table = idle_hive.cli("list").stdout
    header, *rows = table.splitlines()
    assert "LOGIN" in header.split()
    alice = next(r for r in rows if r.startswith("alice"))
    assert alice[header.index("LOGIN") :].split()[0] == "claude_missing"


async def test_a_missing_claude_is_told_once_across_a_daemon_restart(idle_hive: Hive) -> None:
    idle_hive.extra_env["HIVE_CLAUDE_BIN"] = str(idle_hive.root / "no-such-claude")
    idle_hive.start()
    assert idle_hive.cli("stop", "hm1nd").returncode == 0
    assert idle_hive.cli("spawn", "alice").returncode == 0
    async with idle_hive.client() as host:
        await host.call(rq.Send(cmd="send", to="alice", body="hello"), rs.Sent)
    (told,) = await manager_inbox(idle_hive, wait=30)
    assert isinstance(told.event, helper.ClaudeMissing)

    assert idle_hive.stop() == 0
    idle_hive.start()
    # The message is still queued: alice's new harness runs a turn on it, finds claude
    # missing again and reports it before the turn ends.
    await turns_done(idle_hive, "alice", 1)
    assert login_of(idle_hive, "alice") == "claude_missing"
    assert await manager_inbox(idle_hive, wait=0) == []
