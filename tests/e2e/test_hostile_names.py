"""Hostile names are refused on every entry point before any filesystem or process activity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.hive import Hive
from tests.e2e.raw import RawConn

HOSTILE = [
    "..",
    ".",
    "/",
    "a/b",
    "../../etc",
    "x\x00y",
    "a" * 1000,
    "a;id",
    "$(id)",
    "`id`",
    "a b",
    "a\nb",
    "-rf",
    "ab-",
    "Alice",
    "\u0430lice",  # Cyrillic a
    "\uff41lice",  # fullwidth a
    "al\u200bce",  # zero-width space
    "operator",
    "hive",
    "manager",
    "all",
    "",
]
ARGV_SAFE = [n for n in HOSTILE if "\x00" not in n and n]

HOST_VERBS_WITH_NAME = ["spawn", "request_spawn", "start", "stop", "kill", "restart", "rebuild"]
MANAGER_VERBS_WITH_NAME = ["request_spawn", "start", "kill", "restart", "rebuild"]
CLI_COMMANDS = ["spawn", "request-spawn", "start", "stop", "kill", "restart", "rebuild", "destroy"]


def snapshot(hive: Hive) -> tuple[list[str], list[str], set[str]]:
    def tree(root: Path) -> list[str]:
        # A harness opens its mcp.sock by itself, some time after it came up, and sqlite
        # makes and drops a database's -wal and -shm files as it writes (its first prune).
        skip = ("hive.sqlite", "mcp.sock", ".sqlite-wal", ".sqlite-shm")
        return sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if not any(s in p.name for s in skip)
        )

    children = {
        p
        for p in os.listdir("/proc")
        if p.isdigit() and _parent(p) == str(hive.proc.pid if hive.proc else 0)
    }
    return tree(hive.state_dir / "agents"), tree(hive.run_dir), children


def _parent(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None


async def test_hostile_names_are_refused_on_every_socket_verb(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    before = snapshot(hive)
    host = await RawConn.open(hive.host_sock)
    manager = await RawConn.open(hive.manager_sock)
    agent = await RawConn.open(hive.agent_sock("alice"))
    try:
        for name in HOSTILE:
            for verb in HOST_VERBS_WITH_NAME:
                await _refused(host, {"cmd": verb, "name": name}, name)
            await _refused(host, {"cmd": "destroy", "name": name, "purge": True}, name)
            for verb in MANAGER_VERBS_WITH_NAME:
                await _refused(manager, {"cmd": verb, "name": name}, name)
            if name != "operator":  # operator is a valid recipient
                for conn in (host, manager, agent):
                    await _refused(conn, {"cmd": "send", "to": name, "body": "hi"}, name)
    finally:
        for conn in (host, manager, agent):
            await conn.close()
    assert snapshot(hive) == before


async def _refused(conn: RawConn, request: dict[str, object], name: str) -> None:
    reply = await conn.ask_json(request)
    assert reply is not None and reply["ok"] is False, (request, reply)
    assert reply["code"] == "invalid_name", (ascii(name), request["cmd"], reply)


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_hostile_names_are_refused_by_the_cli(hive: Hive, command: str) -> None:
    # Every command goes through the same validator; spawn gets the whole list.
    names = ARGV_SAFE if command == "spawn" else ["..", "a/b", "$(id)", "\u0430lice", "operator"]
    before = snapshot(hive)
    for name in names:
        args = [command, "--", name]
        result = hive.cli(*args)
        assert result.returncode == 1, (ascii(name), result.stdout, result.stderr)
        assert "agent name" in result.stderr, (ascii(name), result.stderr)
        assert "\x1b" not in result.stderr and "\u200b" not in result.stderr
    assert snapshot(hive) == before


def test_cli_send_refuses_hostile_recipients(hive: Hive) -> None:
    before = snapshot(hive)
    for name in ["..", "a/b", "$(id)", "\u0430lice", "a" * 1000, "hive"]:
        result = hive.cli("send", "--", name, "hi")
        assert result.returncode == 1, (ascii(name), result.stderr)
    assert snapshot(hive) == before
