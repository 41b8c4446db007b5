"""Two agents' sockets flooded with half-sent lines cost the operator and the other
sockets nothing, and every descriptor comes back once the flooders go quiet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from pathlib import Path

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from tests.e2e.hive import Hive

FLOOD = 1500
"""Connections per flooded socket, as in the report that found the hole."""
IDLE_BOUND = 35.0
"""The server's line timeout is 30 s; every flooder must be cut within 35 s."""
HALF_LINE = b'{"cmd": "send", "to": "operator", "body": "' + b"x" * 2048


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


async def _flooder(path: Path) -> asyncio.StreamReader | None:
    """Connect and send part of a line; the reader, or None if refused at once."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(HALF_LINE)
        await writer.drain()
    except (ConnectionError, BrokenPipeError):
        return None
    _writers.append(writer)
    return reader


_writers: list[asyncio.StreamWriter] = []


async def _until_closed(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


@pytest.mark.slow
async def test_flooded_agent_sockets_cost_the_rest_nothing(hive: Hive) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * FLOOD + 512:
        pytest.skip(f"the descriptor hard limit {hard} is too low to open {2 * FLOOD} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for name in ("alice", "bob", "carol"):
        assert hive.cli("spawn", name).returncode == 0
    assert hive.proc is not None
    pid = hive.proc.pid
    fds_before, rss_before = _fds(pid), _rss_kib(pid)

    readers = []
    for name in ("alice", "bob"):
        for _ in range(FLOOD):
            reader = await _flooder(hive.agent_sock(name))
            if reader is not None:
                readers.append(reader)
    flood_done = time.monotonic()

    started = time.monotonic()
    listed = await asyncio.to_thread(hive.cli, "list")
    list_seconds = time.monotonic() - started
    assert listed.returncode == 0, listed.stderr
    assert "carol" in listed.stdout
    async with hive.client() as host:
        started = time.monotonic()
        await host.call(rq.Send(cmd="send", to="carol", body="still here"), rs.Sent)
        send_seconds = time.monotonic() - started
    async with hive.client(hive.agent_sock("carol")) as carol:
        await carol.call(rq.Ping(cmd="ping"), rs.Pong)
    async with hive.client(hive.manager_sock) as manager:
        await manager.call(rq.Ping(cmd="ping"), rs.Pong)
    rss_growth_mib = (_rss_kib(pid) - rss_before) / 1024

    async with asyncio.timeout(IDLE_BOUND - (time.monotonic() - flood_done)):
        await asyncio.gather(*(_until_closed(r) for r in readers))
    for writer in _writers:
        writer.close()
    _writers.clear()

    assert list_seconds < 1.0
    assert send_seconds < 1.0
    assert rss_growth_mib < 50
    assert _fds(pid) <= fds_before + 2  # a harness may hold a connection more or less
    log = hive.log_path.read_text(errors="replace")
    assert log.count("refusing more (busy)") <= 4  # once per burst and socket
    assert "Traceback" not in log
