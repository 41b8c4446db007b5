"""Agents' web ports that another program holds: the agent moves for good, and its page link
never points at a port its harness does not listen on."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from hive_core.ports import PORT_BASE, PORT_RANGE, hashed_port
from tests.e2e.hive import AGENT_PORT_BASE, Hive, wait_until_dead


@contextmanager
def held(port: int) -> Iterator[None]:
    """Another program listening on 127.0.0.1:`port` (this test, which never accepts)."""
    with socket.socket() as sock:
        # As a server would: a connection an earlier test's page closed on this port may
        # linger in TIME_WAIT, which only a listener without SO_REUSEADDR trips over.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def listed(hive: Hive) -> dict[str, dict[str, object]]:
    result = hive.cli("list", "--json")
    assert result.returncode == 0, result.stderr
    return {a["name"]: a for a in json.loads(result.stdout)}


def web_port(hive: Hive, name: str) -> int:
    port = listed(hive)[name]["web_port"]
    assert isinstance(port, int)
    return port


def opens_page(hive: Hive, name: str, port: int) -> None:
    """`login-link NAME` points at `port`, and the agent's page answers there."""
    got = hive.cli("login-link", name)
    assert got.returncode == 0, got.stderr
    match = re.search(rf"http://127\.0\.0\.1:{port}/login\?code=[\w-]+", got.stdout)
    assert match is not None, got.stdout
    base, _, code = match.group(0).partition("/login?code=")
    with httpx.Client(base_url=base, timeout=30) as client:
        answer = client.post("/api/session", json={"code": code}, headers={"X-Hive-Request": "1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["token"].startswith("v1.")


def test_the_tests_agents_never_use_the_default_port_range() -> None:
    """A `./dev serve` hive on the same machine holds ports of the default range."""
    assert not PORT_BASE - PORT_RANGE < AGENT_PORT_BASE < PORT_BASE + PORT_RANGE


def test_a_spawn_onto_a_port_another_program_holds_moves_the_agent_for_good(hive: Hive) -> None:
    first = hashed_port("quill", AGENT_PORT_BASE)
    with held(first):
        assert hive.cli("spawn", "quill").returncode == 0
        port = web_port(hive, "quill")
        assert port != first
        opens_page(hive, "quill", port)
    assert hive.stop() == 0
    hive.start()
    assert web_port(hive, "quill") == port  # kept, though its first choice is free now
    opens_page(hive, "quill", port)


def test_a_start_onto_a_port_another_program_took_moves_the_agent(hive: Hive) -> None:
    assert hive.cli("spawn", "quill").returncode == 0
    first = web_port(hive, "quill")
    assert hive.cli("stop", "quill").returncode == 0
    with held(first):
        assert hive.cli("start", "quill").returncode == 0
        port = web_port(hive, "quill")
        assert port != first
        opens_page(hive, "quill", port)


async def test_a_port_taken_while_the_daemon_was_down_moves_the_agent_at_start(
    hive: Hive,
) -> None:
    assert hive.cli("spawn", "quill").returncode == 0
    quill = listed(hive)["quill"]
    first, pid = quill["web_port"], quill["pid"]
    assert isinstance(first, int) and isinstance(pid, int)
    assert hive.stop() == 0
    await wait_until_dead(pid)
    with held(first):
        hive.start()
        port = web_port(hive, "quill")
        assert port != first
        opens_page(hive, "quill", port)
    assert hive.stop() == 0
    hive.start()
    assert web_port(hive, "quill") == port
    opens_page(hive, "quill", port)
