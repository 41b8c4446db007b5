"""Every `hive-core` command against a real daemon, through the real CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hive_share import requests as rq
from hive_share import responses as rs
from tests.e2e.hive import Hive, wait_until_dead


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def agents(hive: Hive) -> dict[str, dict[str, object]]:
    return {a["name"]: a for a in json.loads(ok(hive.cli("list", "--json")))}


def test_spawn_list_send_kill_and_purge_round_trip(hive: Hive) -> None:
    assert "spawned alice" in ok(hive.cli("spawn", "alice"))
    table = ok(hive.cli("list"))
    assert any(line.split()[:3] == ["alice", "agent", "running"] for line in table.splitlines())
    listed = agents(hive)
    assert listed["alice"]["state"] == "running" and listed["alice"]["alive"] is True
    assert listed["hm1nd"]["role"] == "manager"
    pid = listed["alice"]["pid"]
    assert isinstance(pid, int)

    assert "sent message" in ok(hive.cli("send", "alice", "hi"))
    assert "killed alice" in ok(hive.cli("kill", "alice"))
    assert agents(hive)["alice"]["state"] == "stopped"
    assert not os.path.exists(f"/proc/{pid}")

    assert "purged" in ok(hive.cli("destroy", "--purge", "alice"))
    assert "alice" not in agents(hive)
    assert not (hive.state_dir / "agents" / "alice").exists()


def test_stop_start_restart_and_rebuild_change_the_process(hive: Hive) -> None:
    ok(hive.cli("spawn", "bob"))
    first = agents(hive)["bob"]["pid"]
    assert "stopped bob" in ok(hive.cli("stop", "bob"))
    assert agents(hive)["bob"]["state"] == "stopped"
    assert "started bob" in ok(hive.cli("start", "bob"))
    second = agents(hive)["bob"]["pid"]
    assert "restarted bob" in ok(hive.cli("restart", "bob"))
    third = agents(hive)["bob"]["pid"]
    assert "rebuilt bob" in ok(hive.cli("rebuild", "bob"))
    fourth = agents(hive)["bob"]["pid"]
    pids = [first, second, third, fourth]
    assert len(set(pids)) == 4, pids
    assert agents(hive)["bob"]["alive"] is True


def test_destroy_keeps_a_tombstone_until_purged(hive: Hive) -> None:
    ok(hive.cli("spawn", "carol"))
    (hive.state_dir / "agents" / "carol" / "state" / "notes.md").write_text("remember")
    assert "tombstone kept" in ok(hive.cli("destroy", "carol"))
    assert agents(hive)["carol"]["state"] == "tombstone"
    assert "already destroyed" in refused(hive.cli("destroy", "carol"))
    # Spawning the name again revives the tombstone with its state.
    ok(hive.cli("spawn", "carol"))
    notes = hive.state_dir / "agents" / "carol" / "state" / "notes.md"
    assert notes.read_text() == "remember"
    ok(hive.cli("destroy", "carol"))
    assert "purged the tombstone" in ok(hive.cli("destroy", "--purge", "carol"))
    assert "no agent or tombstone" in refused(hive.cli("destroy", "carol"))


def test_request_spawn_pending_approve_and_deny(hive: Hive) -> None:
    assert "queued approval 1" in ok(hive.cli("request-spawn", "dave"))
    ok(hive.cli("request-spawn", "erin"))
    assert "already pending" in refused(hive.cli("request-spawn", "dave"))
    pending = json.loads(ok(hive.cli("pending", "--json")))
    assert [(p["id"], p["agent"], p["requester"]) for p in pending] == [
        (1, "dave", "operator"),
        (2, "erin", "operator"),
    ]
    assert "dave" in ok(hive.cli("pending"))
    assert "spawned dave" in ok(hive.cli("approve", "1"))
    assert "denied 2" in ok(hive.cli("deny", "2", "--reason", "not now"))
    assert agents(hive)["dave"]["state"] == "running"
    assert "erin" not in agents(hive)
    assert "no pending approvals" in ok(hive.cli("pending"))
    assert "already approved" in refused(hive.cli("approve", "1"))
    assert "already denied" in refused(hive.cli("deny", "2"))
    assert "no approval with id 99" in refused(hive.cli("approve", "99"))


async def test_inbox_shows_agent_messages_with_control_bytes_escaped(hive: Hive) -> None:
    ok(hive.cli("spawn", "frank"))
    async with hive.client(hive.agent_sock("frank")) as frank:
        body = "alert\x1b[2J\u202eevil\nline2"
        await frank.call(rq.Send(cmd="send", to="operator", body=body), rs.Sent)
    out = ok(hive.cli("inbox"))
    assert "\x1b" not in out and "\u202e" not in out
    assert "alert\\x1b[2J\\u202eevil\\x0aline2" in out
    assert "frank" in out
    listed = json.loads(ok(hive.cli("inbox", "--json")))
    assert [(m["sender"], m["body"]) for m in listed] == [("frank", body)]
    assert listed[0]["delivered_at"] is not None


def test_send_reads_stdin_and_refuses_unknown_and_empty(hive: Hive) -> None:
    ok(hive.cli("spawn", "gina"))
    assert "sent message 1 to gina" in ok(hive.cli("send", "gina", "-", stdin="from stdin"))
    assert "no agent named 'nobody1'" in refused(hive.cli("send", "nobody1", "hi"))
    assert "empty" in refused(hive.cli("send", "gina", "-", stdin=""))
    assert "yourself" in refused(hive.cli("send", "operator", "hi"))


def test_every_command_fails_cleanly_when_the_daemon_is_down(hive: Hive) -> None:
    assert hive.stop() == 0
    for args in (
        ["list"],
        ["list", "--json"],
        ["pending"],
        ["inbox"],
        ["spawn", "zed"],
        ["request-spawn", "zed"],
        ["start", "zed"],
        ["stop", "zed"],
        ["kill", "zed"],
        ["restart", "zed"],
        ["rebuild", "zed"],
        ["destroy", "zed"],
        ["approve", "1"],
        ["deny", "1"],
        ["send", "zed", "hi"],
    ):
        assert "not running" in refused(hive.cli(*args)), args


def test_serve_refuses_a_second_daemon_on_the_same_sockets(hive: Hive) -> None:
    result = hive.cli("serve", "--state-dir", str(hive.root / "other-state"))
    assert result.returncode == 1
    assert "already listening" in result.stderr
    assert agents(hive)["hm1nd"]["state"] == "running"


def test_shell_completion_is_offered() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hive_core", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("_")},
    )
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout


async def test_killed_agent_process_is_gone_and_restart_brings_it_back(hive: Hive) -> None:
    ok(hive.cli("spawn", "hank"))
    pid = agents(hive)["hank"]["pid"]
    assert isinstance(pid, int)
    ok(hive.cli("kill", "hank"))
    await wait_until_dead(pid)
    ok(hive.cli("start", "hank"))
    assert agents(hive)["hank"]["alive"] is True
