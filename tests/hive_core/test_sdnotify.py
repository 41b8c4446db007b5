"""systemd's notify protocol without libsystemd (hive_core/sdnotify.py)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_core.sdnotify import Notifier, watchdog_interval
from tests.e2e.hive import short_tmp


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, Path]]:
    path = short_tmp() / "n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        yield sock, path
    finally:
        sock.close()
        path.unlink()
        path.parent.rmdir()


def test_assignments_go_in_one_datagram(receiver: tuple[socket.socket, Path]) -> None:
    sock, path = receiver
    notifier = Notifier(str(path))
    assert notifier.enabled
    assert notifier.send("STOPPING=1", "STATUS=stopping")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_an_abstract_socket_is_reached() -> None:
    name = f"hyperhive-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier("@" + name).send("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_without_a_socket_nothing_is_sent() -> None:
    for unset in (None, ""):
        notifier = Notifier(unset)
        assert not notifier.enabled
        assert not notifier.send("READY=1")


def test_a_receiver_that_stops_reading_never_blocks_the_sender_and_is_logged_once(
    receiver: tuple[socket.socket, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = receiver
    notifier = Notifier(str(path))
    results = [notifier.send("WATCHDOG=1") for _ in range(200)]  # far past max_dgram_qlen
    assert results[0] and not results[-1]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "WATCHDOG=1" in warnings[0].getMessage()
    sock.setblocking(False)
    drained = 0
    with contextlib.suppress(BlockingIOError):
        while sock.recv(4096) == b"WATCHDOG=1":
            drained += 1
    assert drained == sum(results), "each send that said so went out"
    assert notifier.send("READY=1")


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4242"}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(
    env: dict[str, str], interval: float | None
) -> None:
    assert watchdog_interval(env, 4242) == interval
