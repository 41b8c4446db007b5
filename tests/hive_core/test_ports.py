"""Web ports: the hash first, then the next free port, deterministically; who listens on one."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from hive_core import harness_calls
from hive_core.db import Database
from hive_core.errors import BackendError, PortCollision
from hive_core.ports import (
    PORT_BASE,
    PORT_RANGE,
    agent_web_port,
    hashed_port,
    holds,
    loopback_listeners,
    next_web_port,
    socket_owner,
)
from hive_core.registry import Registry
from tests.hive_core.conftest import FakeClock


def test_a_free_hashed_port_is_the_agents_port() -> None:
    assert agent_web_port("alice", {hashed_port("bob")} - {hashed_port("alice")}) == hashed_port(
        "alice"
    )


def test_a_taken_port_moves_to_the_next_free_one_upwards() -> None:
    first = hashed_port("alice")
    taken = {first, first + 1} if first + 2 < PORT_BASE + PORT_RANGE else {first}
    got = agent_web_port("alice", taken)
    assert got not in taken
    assert got == (first + len(taken) - PORT_BASE) % PORT_RANGE + PORT_BASE
    assert agent_web_port("alice", taken) == got  # the same answer every time


def test_the_probe_wraps_around_the_end_of_the_range() -> None:
    first = hashed_port("alice")
    taken = set(range(first, PORT_BASE + PORT_RANGE))
    assert agent_web_port("alice", taken) == PORT_BASE


def test_a_full_range_has_no_port() -> None:
    assert agent_web_port("alice", set(range(PORT_BASE, PORT_BASE + PORT_RANGE))) is None


def test_thirty_eight_agents_all_get_distinct_ports() -> None:
    taken: set[int] = set()
    for i in range(38 * 10):
        port = agent_web_port(f"a{i}", taken)
        assert port is not None and port not in taken
        taken.add(port)


def test_a_moved_base_moves_the_whole_range() -> None:
    moved = agent_web_port("alice", (), 50000)
    assert moved == hashed_port("alice") - PORT_BASE + 50000
    assert agent_web_port("alice", set(range(50000, 50000 + PORT_RANGE)), 50000) is None


def test_a_port_another_program_holds_is_skipped_like_a_taken_one() -> None:
    first = hashed_port("alice")
    held = {first, first + 1}
    got = agent_web_port("alice", (), PORT_BASE, lambda port: port not in held)
    assert got is not None and got not in held
    assert got == agent_web_port("alice", held)


def test_a_moved_agent_gets_the_next_free_port_upwards_never_its_own() -> None:
    assert next_web_port(PORT_BASE + 10) == PORT_BASE + 11
    assert next_web_port(PORT_BASE + 10, {PORT_BASE + 11}) == PORT_BASE + 12
    assert next_web_port(PORT_BASE + 10, (), PORT_BASE, lambda p: p != PORT_BASE + 11) == (
        PORT_BASE + 12
    )
    last = PORT_BASE + PORT_RANGE - 1
    assert next_web_port(last) == PORT_BASE  # wraps within the range
    assert next_web_port(PORT_BASE, (), PORT_BASE, lambda p: p == PORT_BASE) is None


async def test_a_move_is_kept_in_the_registry(db: Database, clock: FakeClock) -> None:
    registry = Registry(db, clock, 50000)
    await registry.load()
    first = (await registry.add("alice", "agent")).web_port
    held = {first, first + 1}
    moved = await registry.move_port("alice", lambda port: port not in held)
    assert moved.web_port not in held and registry.get("alice") == moved
    again = Registry(db, clock, 50000)
    await again.load()
    assert again.get("alice").web_port == moved.web_port
    with pytest.raises(PortCollision):
        await registry.move_port("alice", lambda port: False)


async def test_a_new_agent_skips_a_port_another_program_holds(
    db: Database, clock: FakeClock
) -> None:
    registry = Registry(db, clock, 50000)
    await registry.load()
    first = hashed_port("alice", 50000)
    record = await registry.add("alice", "agent", lambda port: port != first)
    assert record.web_port == next_web_port(first, (), 50000)


async def test_agents_added_at_once_whose_names_hash_alike_get_ports_of_their_own(
    db: Database, clock: FakeClock
) -> None:
    first = hashed_port("a0", 50000)
    alike = next(f"a{i}" for i in range(1, 10_000) if hashed_port(f"a{i}", 50000) == first)
    registry = Registry(db, clock, 50000)
    await registry.load()
    a, b = await asyncio.gather(registry.add("a0", "agent"), registry.add(alike, "agent"))
    assert (a.web_port, b.web_port) == (first, agent_web_port(alike, {first}, 50000))


def test_the_listener_on_a_loopback_port_is_found_with_the_process_holding_it() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert loopback_listeners(port) == set()  # bound, not listening
        server.listen()
        listeners = loopback_listeners(port)
        assert len(listeners) == 1
        assert holds(os.getpid(), listeners)
        assert not holds(os.getppid(), listeners)


def test_a_listener_on_another_loopback_address_does_not_take_127_0_0_1() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.2", 0))
        other.listen()
        assert loopback_listeners(other.getsockname()[1]) == set()


def test_a_listener_on_every_address_takes_127_0_0_1() -> None:
    with socket.socket() as everywhere:
        everywhere.bind(("0.0.0.0", 0))
        everywhere.listen()
        assert holds(os.getpid(), loopback_listeners(everywhere.getsockname()[1]))


def test_the_owner_of_a_unix_socket_is_who_listens_on_it(tmp_path: Path) -> None:
    path = tmp_path / "harness.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        assert socket_owner(path) == os.getpid()
    (tmp_path / "plain").touch()
    with pytest.raises(OSError):
        socket_owner(tmp_path / "plain")


LISTENER = """import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_no_page_link_is_made_where_another_program_listens(tmp_path: Path) -> None:
    """An agent's page port taken by another program (its harness could not bind it): the
    login link is refused, naming the port; where the harness itself listens, it is not."""
    settings = SimpleNamespace(
        harness_socket=lambda name: tmp_path / "harness.sock", dashboard_host="127.0.0.1"
    )
    s = cast(Any, SimpleNamespace(settings=settings))
    with socket.socket(socket.AF_UNIX) as harness:  # this process stands in for the harness
        harness.bind(str(tmp_path / "harness.sock"))
        harness.listen()
        with subprocess.Popen(
            [sys.executable, "-c", LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as other:
            assert other.stdout is not None
            port = int(other.stdout.readline())
            record = cast(Any, SimpleNamespace(name="quill", web_port=port))
            with pytest.raises(BackendError, match=f"another program listens on port {port}, "):
                asyncio.run(harness_calls._page_listens(s, record))
            other.kill()
        with socket.socket() as page:  # now the "harness" serves its page there
            page.bind(("127.0.0.1", 0))
            page.listen()
            record = cast(Any, SimpleNamespace(name="quill", web_port=page.getsockname()[1]))
            asyncio.run(harness_calls._page_listens(s, record))
