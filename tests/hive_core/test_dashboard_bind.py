"""The dashboard's port: bound up front, retried for a few seconds while another socket
still listens on it (a previous daemon's slow exit), then a clear start-up error."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from hive_core.dashboard import server
from hive_core.errors import StartupError


@pytest.fixture
def holder() -> Iterator[socket.socket]:
    """A listener on a free loopback port, as a daemon that has not exited yet holds it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock
    finally:
        sock.close()


async def test_a_port_freed_while_waiting_is_bound(holder: socket.socket) -> None:
    port = holder.getsockname()[1]
    attempts = []

    def busy() -> None:
        attempts.append(port)
        if len(attempts) == 3:
            holder.close()  # the previous daemon is gone

    sock = await server.bind("127.0.0.1", port, wait=30.0, poll=0.0, on_busy=busy)
    try:
        assert sock.getsockname()[1] == port
        assert len(attempts) == 3
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    finally:
        sock.close()


async def test_a_port_still_held_after_the_wait_is_a_startup_error(
    holder: socket.socket,
) -> None:
    port = holder.getsockname()[1]
    attempts: list[int] = []
    with pytest.raises(StartupError) as caught:
        await server.bind("127.0.0.1", port, wait=0.2, poll=0.01,
                          on_busy=lambda: attempts.append(1))  # fmt: skip
    message = str(caught.value)
    assert f"cannot bind the dashboard to 127.0.0.1:{port}" in message
    assert "still after 0s" in message and f"sport = :{port}" in message
    assert "HIVE_DASHBOARD_PORT" in message
    assert len(attempts) >= 2  # retried, not given up at the first refusal


async def test_an_address_that_cannot_be_bound_fails_at_once() -> None:
    attempts: list[int] = []
    with pytest.raises(StartupError) as caught:
        # TEST-NET-1: no interface of this machine has it.
        await server.bind("192.0.2.1", 0, wait=30.0, on_busy=lambda: attempts.append(1))
    assert attempts == []
    assert "cannot bind the dashboard to 192.0.2.1:0" in str(caught.value)
    assert "still after" not in str(caught.value)
    assert "assign" in str(caught.value).lower()


async def test_a_previous_daemons_closed_connections_do_not_hold_the_port() -> None:
    """A connection closed by the server side lingers in TIME_WAIT on its port; with
    SO_REUSEADDR the next daemon binds at once."""
    first = await server.bind("127.0.0.1", 0, wait=0.0)
    port = first.getsockname()[1]
    first.setblocking(True)
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    accepted, _ = first.accept()
    accepted.close()  # the server closes first: its side goes to TIME_WAIT
    client.close()
    first.close()
    again = await server.bind("127.0.0.1", port, wait=0.0)
    again.close()
