"""Start-up checks, SIGTERM drain, and what survives a daemon restart."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import stat
import string

import pytest

from hive_core.ports import hashed_port as _hashed
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import RemoteError
from tests.e2e.hive import AGENT_PORT_BASE, READY_TIMEOUT, Hive, wait_until_dead
from tests.git import git


def listed(hive: Hive) -> dict[str, dict[str, object]]:
    result = hive.cli("list", "--json")
    assert result.returncode == 0, result.stderr
    return {a["name"]: a for a in json.loads(result.stdout)}


BANNER = "is running (backend:"
"""In the banner the daemon prints once it has started, just before READY=1."""


async def start_until_listening(hive: Hive) -> int:
    """Start the daemon and return as soon as host.sock exists, long before it is ready;
    returns where this start's part of the log begins."""
    begins = len(hive.log())
    hive.start(ready=False)
    hive.wait_for_notify("STATUS=starting: loading the dashboard")  # sent once they answer
    return begins


def still_starting(hive: Hive, begins: int) -> bool:
    return BANNER not in hive.log()[begins:]


async def test_a_spawn_sent_as_soon_as_host_sock_exists_waits_for_start_up(
    idle_hive: Hive,
) -> None:
    begins = await start_until_listening(idle_hive)
    assert still_starting(idle_hive, begins)
    spawned = await asyncio.to_thread(idle_hive.cli, "spawn", "alice")
    assert spawned.returncode == 0, spawned.stderr
    assert "spawned alice" in spawned.stdout
    idle_hive.wait_for_notify("READY=1")
    alice = listed(idle_hive)["alice"]
    assert (alice["state"], alice["alive"]) == ("running", True)


async def test_list_in_the_start_up_window_does_not_show_agents_being_restored_stopped(
    hive: Hive,
) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    assert hive.stop() == 0
    begins = await start_until_listening(hive)
    async with hive.client() as host:
        assert still_starting(hive, begins)
        got = await host.call(rq.List(cmd="list"), rs.Agents)
    hive.wait_for_notify("READY=1")
    states = {a.name: (a.state, a.alive) for a in got.agents}
    assert states == {"alice": ("running", True), "hm1nd": ("running", True)}


async def test_an_approve_in_the_start_up_window_verifies_the_deploy(hive: Hive) -> None:
    assert hive.cli("spawn", "bob").returncode == 0
    initial = listed(hive)["bob"]["deployed_commit"]
    proposed = hive.state_dir / "agents" / "bob" / "proposed"
    (proposed / "agent.toml").write_text('[mcp_servers.mute]\ncommand = "true"\n')
    git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "mute")
    sha = git(proposed, "rev-parse", "HEAD")
    async with hive.client(hive.manager_sock) as manager:
        proposal = await manager.call(
            rq.RequestApplyCommit(cmd="request_apply_commit", agent="bob", commit=sha),
            rs.ApprovalResult,
        )
    assert hive.stop() == 0
    begins = await start_until_listening(hive)
    async with hive.client() as host:
        assert still_starting(hive, begins)
        with pytest.raises(RemoteError) as failed:  # its MCP server never answers
            await host.call(rq.Approve(cmd="approve", id=proposal.approval.id), rs.Done)
    hive.wait_for_notify("READY=1")
    assert "rolled back" in str(failed.value), failed.value
    bob = listed(hive)["bob"]
    assert (bob["state"], bob["alive"], bob["deployed_commit"]) == ("running", True, initial)


async def host_version(hive: Hive) -> rs.VersionResult:
    async with hive.client() as host:
        return await host.call(rq.Version(cmd="version"), rs.VersionResult)


async def test_a_sigterm_during_start_up_answers_the_waiting_requests_at_once(
    idle_hive: Hive,
) -> None:
    begins = await start_until_listening(idle_hive)
    async with idle_hive.client() as host:
        assert still_starting(idle_hive, begins)
        waiting = asyncio.create_task(host.request(rq.List(cmd="list")))
        assert (await host_version(idle_hive)).server.startswith("hive-core")  # answered at once
        assert not waiting.done()
        assert idle_hive.proc is not None
        idle_hive.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(READY_TIMEOUT):
            answer = await waiting
    assert isinstance(answer, rs.Error) and answer.code == "shutting_down", answer
    assert "before it finished starting" in answer.error
    assert await asyncio.to_thread(idle_hive.stop) == 0


async def test_sigterm_answers_waiting_long_polls_and_exits_cleanly(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with hive.client(hive.agent_sock("alice")) as alice:
        waiting = asyncio.create_task(
            alice.call(rq.Recv(cmd="recv", wait_seconds=170), rs.Messages)
        )
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done
        code = await asyncio.to_thread(hive.stop)
        with pytest.raises(RemoteError) as refused:
            await waiting
    assert refused.value.code == "shutting_down"
    assert code == 0
    assert not hive.host_sock.exists()
    assert "stopped" in hive.log()


def test_running_agents_come_back_and_stopped_ones_stay_stopped(hive: Hive) -> None:
    for name in ("alice", "bob"):
        assert hive.cli("spawn", name).returncode == 0
    assert hive.cli("stop", "bob").returncode == 0
    before = listed(hive)
    assert hive.stop() == 0
    assert not os.path.exists(f"/proc/{before['alice']['pid']}"), "harness outlived the daemon"
    hive.start()
    after = listed(hive)
    assert after["alice"]["state"] == "running" and after["alice"]["alive"] is True
    assert after["alice"]["pid"] != before["alice"]["pid"]
    assert after["hm1nd"]["state"] == "running"
    assert after["bob"]["state"] == "stopped"


async def test_harnesses_die_with_a_sigkilled_daemon_and_return_on_restart(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    pid = listed(hive)["alice"]["pid"]
    assert isinstance(pid, int)
    hive.kill9()
    await wait_until_dead(pid)
    await asyncio.to_thread(hive.start)
    assert listed(hive)["alice"]["alive"] is True


async def test_unacked_messages_are_redelivered_after_a_daemon_restart(hive: Hive) -> None:
    hive.spawn_idle("alice")
    assert hive.cli("send", "alice", "keep me").returncode == 0
    async with hive.client(hive.agent_sock("alice")) as alice:
        first = await alice.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
    assert [m.body for m in first.messages] == ["keep me"]
    assert hive.stop() == 0
    hive.start()
    async with hive.client(hive.agent_sock("alice")) as alice:
        again = await alice.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
        assert [m.id for m in again.messages] == [m.id for m in first.messages]
        await alice.call(rq.Ack(cmd="ack", ids=[again.messages[0].id]), rs.Acked)
    assert hive.stop() == 0
    hive.start()
    async with hive.client(hive.agent_sock("alice")) as alice:
        empty = await alice.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
    assert empty.messages == []


def test_a_corrupt_database_stops_startup_with_a_clear_message(idle_hive: Hive) -> None:
    idle_hive.state_dir.mkdir(parents=True)
    (idle_hive.state_dir / "hive.sqlite").write_bytes(b"this is not sqlite" * 100)
    result = idle_hive.cli("serve")
    assert result.returncode == 1
    assert "hive.sqlite" in result.stderr and "corrupt" in result.stderr
    assert not idle_hive.host_sock.exists()


def test_a_symlink_in_place_of_a_socket_is_refused(idle_hive: Hive) -> None:
    idle_hive.run_dir.mkdir(parents=True)
    target = idle_hive.root / "elsewhere"
    target.write_text("do not touch")
    os.symlink(target, idle_hive.host_sock)
    result = idle_hive.cli("serve")
    assert result.returncode == 1 and "symlink" in result.stderr
    assert target.read_text() == "do not touch"


def test_a_run_dir_too_long_for_socket_paths_is_refused(idle_hive: Hive) -> None:
    result = idle_hive.cli("serve", "--run-dir", "/tmp/" + "d" * 90)
    assert result.returncode == 1 and "HIVE_RUN_DIR" in result.stderr


def test_the_nixos_backend_without_its_flake_or_tools_is_refused_at_startup(
    idle_hive: Hive,
) -> None:
    result = idle_hive.cli("serve", "--backend", "nixos")
    assert result.returncode == 1 and "HIVE_HYPERHIVE_FLAKE" in result.stderr
    idle_hive.extra_env.update(HIVE_HYPERHIVE_FLAKE="path:/x", HIVE_NIXOS_CONTAINER="/nonexistent")
    result = idle_hive.cli("serve", "--backend", "nixos")
    assert result.returncode == 1 and "HIVE_NIXOS_CONTAINER" in result.stderr
    assert not idle_hive.state_dir.exists()  # refused before anything is created


def hashed_port(name: str) -> int:
    return _hashed(name, AGENT_PORT_BASE)


def test_a_name_whose_hashed_port_is_taken_gets_the_next_free_one_for_good(hive: Hive) -> None:
    taken = {hashed_port("hm1nd"): "hm1nd"}
    pair = None
    for letters in itertools.product(string.ascii_lowercase, repeat=3):
        name = "".join(letters)
        port = hashed_port(name)
        if port in taken and taken[port] != "hm1nd" and port + 1 not in taken:
            pair = (taken[port], name)
            break
        taken.setdefault(port, name)
    assert pair is not None
    first, second = pair
    assert hive.cli("spawn", first).returncode == 0
    assert hive.cli("spawn", second).returncode == 0, "a colliding name is not refused"

    def ports() -> dict[str, int]:
        return {a["name"]: a["web_port"] for a in json.loads(hive.cli("list", "--json").stdout)}

    assert ports()[second] == ports()[first] + 1
    assert str(ports()[second]) in hive.cli("list").stdout
    assert hive.cli("destroy", first).returncode == 0
    assert hive.stop() == 0
    hive.start()
    assert ports()[second] == hashed_port(second) + 1  # kept, though its first choice is free


def test_the_daemons_environment_reaches_the_agents(idle_hive: Hive) -> None:
    idle_hive.extra_env.update(
        ANTHROPIC_BASE_URL="http://127.0.0.1:9/fake", ANTHROPIC_API_KEY="sk-test-passthrough"
    )
    idle_hive.start()
    assert idle_hive.cli("spawn", "alice").returncode == 0
    pid = listed(idle_hive)["alice"]["pid"]
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    assert env[b"ANTHROPIC_BASE_URL"] == b"http://127.0.0.1:9/fake"
    assert env[b"ANTHROPIC_API_KEY"] == b"sk-test-passthrough"
    assert env[b"HIVE_AGENT_NAME"] == b"alice"
    assert b"NOTIFY_SOCKET" not in env, "systemd's socket is hive-core's alone"
    assert b"HIVE_STATE_DIR" not in env


def test_operator_transitions_are_recorded_as_transients(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    for verb in ("kill", "start", "restart", "stop"):
        assert hive.cli(verb, "alice").returncode == 0
    db = sqlite3.connect(hive.state_dir / "hive.sqlite")
    rows = db.execute(
        "SELECT action, actor, outcome, ended_at >= started_at FROM transients "
        "WHERE agent = 'alice' ORDER BY id"
    ).fetchall()
    db.close()
    assert rows == [
        ("spawn", "operator", "done", 1),
        ("kill", "operator", "done", 1),
        ("start", "operator", "done", 1),
        ("restart", "operator", "done", 1),
        ("stop", "operator", "done", 1),
    ]


def test_a_second_daemon_on_the_same_state_dir_is_refused(hive: Hive) -> None:
    other_run = hive.root / "r2"
    result = hive.cli("serve", "--run-dir", str(other_run))
    assert result.returncode == 1
    assert "already using" in result.stderr and "hive.lock" in result.stderr
    assert listed(hive)["hm1nd"]["state"] == "running"


def test_a_run_dir_others_can_write_is_refused(idle_hive: Hive) -> None:
    idle_hive.run_dir.mkdir(parents=True)
    idle_hive.run_dir.chmod(0o777)
    result = idle_hive.cli("serve")
    assert result.returncode == 1 and "writable by others" in result.stderr
    assert not (idle_hive.state_dir / "hive.sqlite").exists()


async def test_large_messages_arrive_whole_across_several_receives(hive: Hive) -> None:
    hive.spawn_idle("alice")
    bodies = [chr(ord("a") + i) * 200_000 for i in range(6)]
    async with hive.client() as op:
        for body in bodies:
            await op.call(rq.Send(cmd="send", to="alice", body=body), rs.Sent)
    got: list[str] = []
    async with hive.client(hive.agent_sock("alice")) as alice:
        while len(got) < len(bodies):
            batch = await alice.call(rq.Recv(cmd="recv", wait_seconds=5), rs.Messages)
            assert batch.messages, "a receive came back empty with messages waiting"
            got += [m.body for m in batch.messages]
            await alice.call(rq.Ack(cmd="ack", ids=[m.id for m in batch.messages]), rs.Acked)
    assert got == bodies
    inbox = hive.cli("inbox", "--json")
    assert inbox.returncode == 0, inbox.stderr


async def test_a_body_too_large_to_frame_is_refused_with_a_clear_error(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with hive.client() as op:
        with pytest.raises(RemoteError) as refused:
            await op.call(
                rq.Send.model_construct(cmd="send", to="alice", body="\x01" * 100_000), rs.Sent
            )
    assert refused.value.code == "invalid_request" and "bytes as JSON" in refused.value.message


def test_a_symlink_at_the_database_is_refused_and_its_target_untouched(idle_hive: Hive) -> None:
    idle_hive.state_dir.mkdir(parents=True)
    target = idle_hive.root / "elsewhere.sqlite"
    target.write_bytes(b"precious bytes")
    os.symlink(target, idle_hive.state_dir / "hive.sqlite")
    result = idle_hive.cli("serve")
    assert result.returncode == 1
    assert "hive.sqlite is a symlink" in result.stderr
    assert target.read_bytes() == b"precious bytes"
    assert not (idle_hive.root / "elsewhere.sqlite-wal").exists()


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_everything_hive_core_creates_is_private_whatever_the_umask(
    idle_hive: Hive, umask: int
) -> None:
    old = os.umask(umask)
    try:
        idle_hive.start()
    finally:
        os.umask(old)
    assert idle_hive.cli("spawn", "alice").returncode == 0
    loose = []
    for root in (idle_hive.state_dir, idle_hive.run_dir):
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            # Directories are 0700; files 0600 (git's own sample hooks are 0700).
            if mode & 0o077 or (stat.S_ISDIR(st.st_mode) and mode != 0o700):
                loose.append(f"{oct(mode)} {path}")
    assert not loose, "\n".join(loose)
