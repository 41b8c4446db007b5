"""What one peer can cost a socket: connections, time to send a line, buffered bytes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hive_core.errors import ShuttingDown
from hive_core.sockets.limits import ConnectionCaps, ConnectionPool
from hive_core.sockets.server import Conn, Principal, SocketServer
from hive_core.sockets.startup_gate import StartupGate
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import WireModel
from tests.e2e.hive import short_tmp
from tests.e2e.raw import RawConn

BOUND = 10.0


async def _version(req: Any, conn: Conn) -> WireModel:
    return rs.VersionResult(protocol=1, server="test")


@contextlib.asynccontextmanager
async def served(server: SocketServer) -> AsyncIterator[SocketServer]:
    """`server` serving in a task group of its own, as the daemon serves its sockets; closed
    (if the test did not close it) and ended on the way out."""
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        try:
            yield server
        finally:
            await server.close(0)


def serving(path: Path, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[SocketServer]:
    return served(
        SocketServer(
            path, Principal("operator", "operator"), rq.HOST_VERBS, rq.HOST_REQUEST, _version,
            **kwargs,
        )
    )  # fmt: skip


@pytest.fixture
def root() -> Iterator[Path]:
    """A short temp dir (socket paths), removed afterwards."""
    path = short_tmp()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock(root: Path) -> Path:
    return root / "t.sock"


async def _until(condition: Callable[[], bool]) -> None:
    """Let the server, on this same loop, run until `condition` holds (bounded)."""
    async with asyncio.timeout(BOUND):
        while not condition():  # noqa: ASYNC110 - the server state has no event to wait on
            await asyncio.sleep(0)


async def test_a_connection_over_the_cap_is_answered_busy_and_closed(sock: Path) -> None:
    async with serving(sock, max_connections=1) as server:
        first = await RawConn.open(sock)
        await _until(lambda: server.connection_count == 1)
        second = await RawConn.open(sock)
        async with asyncio.timeout(BOUND):
            line = await second.reader.readline()
        assert b'"code":"busy"' in line
        assert await second.closed_by_server()
        assert (await first.ask_json({"cmd": "version"}) or {})["ok"] is True
        await first.close()
        await second.close()


async def test_busy_is_logged_once_per_burst(sock: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "hive_core.sockets.server")
    async with serving(sock, max_connections=1) as server:
        holder = await RawConn.open(sock)
        await _until(lambda: server.connection_count == 1)
        for _ in range(20):
            refused = await RawConn.open(sock)
            async with asyncio.timeout(BOUND):
                assert b'"code":"busy"' in await refused.reader.readline()
            assert await refused.closed_by_server()
            await refused.close()
        await holder.close()
    busy = [r for r in caplog.records if "refusing more" in r.getMessage()]
    assert len(busy) == 1
    assert str(sock) in busy[0].getMessage()


async def test_a_half_line_is_cut_after_the_idle_timeout(sock: Path) -> None:
    async with serving(sock, idle_timeout=0.2) as server:
        slow = await RawConn.open(sock)
        slow.writer.write(b'{"cmd": "vers')
        await slow.writer.drain()
        async with asyncio.timeout(BOUND):
            line = await slow.reader.readline()
        assert b'"code":"malformed"' in line and b"no complete line" in line
        assert await slow.closed_by_server()
        await _until(lambda: server.connection_count == 0)
        await slow.close()


async def test_a_line_trickled_byte_by_byte_is_still_cut(sock: Path) -> None:
    async with serving(sock, idle_timeout=0.3) as server:
        slow = await RawConn.open(sock)
        closed = asyncio.ensure_future(slow.reader.read())
        async with asyncio.timeout(BOUND):
            while not closed.done():
                with contextlib.suppress(ConnectionError):
                    slow.writer.write(b" ")
                    await slow.writer.drain()
                await asyncio.wait([closed], timeout=0.05)
        # Cut while bytes were still arriving, the close may reach the peer as a reset
        # that discards the error line (or as a broken pipe on its next write); either way
        # the connection was cut in time.
        if closed.exception() is None:
            assert b"no complete line" in closed.result()
        else:
            assert isinstance(closed.exception(), ConnectionResetError | BrokenPipeError)
        await _until(lambda: server.connection_count == 0)
        await slow.close()


async def test_an_idle_connection_is_closed_unless_it_holds_leased_work(sock: Path) -> None:
    holders: set[int] = set()

    async def mark(req: Any, conn: Conn) -> WireModel:
        holders.add(conn.id)  # stands for a recv that leased messages to this connection
        return await _version(req, conn)

    async with serving(sock, idle_timeout=0.2, holds_work=lambda c: c.id in holders) as server:
        server._handler = mark
        busy = await RawConn.open(sock)
        assert (await busy.ask_json({"cmd": "version"}) or {})["ok"] is True
        server._handler = _version
        idle = await RawConn.open(sock)
        assert (await idle.ask_json({"cmd": "version"}) or {})["ok"] is True
        async with asyncio.timeout(BOUND):
            assert b"no complete line" in await idle.reader.readline()
        assert await idle.closed_by_server()
        assert (await busy.ask_json({"cmd": "version"}) or {})["ok"] is True
        await busy.close()
        await idle.close()


async def test_unfinished_lines_are_bounded_per_socket(sock: Path) -> None:
    async with serving(sock, buffer_budget=100_000) as server:
        first = await RawConn.open(sock)
        first.writer.write(b'{"cmd": "version", "pad": "' + b"x" * 70_000)
        await first.writer.drain()
        await _until(lambda: server._buffered >= 70_000)
        second = await RawConn.open(sock)
        second.writer.write(b'{"cmd": "version", "pad": "' + b"y" * 40_000)
        await second.writer.drain()
        async with asyncio.timeout(BOUND):
            line = await second.reader.readline()
        assert b'"code":"busy"' in line
        assert await second.closed_by_server()
        await first.close()
        await second.close()
        await _until(lambda: server._buffered == 0)


async def test_sockets_sharing_a_pool_refuse_when_it_is_used_up(root: Path) -> None:
    pool = ConnectionPool(1)
    async with serving(root / "a.sock", pool=pool), serving(root / "b.sock", pool=pool):
        a = await RawConn.open(root / "a.sock")
        await _until(lambda: pool.used == 1)
        b = await RawConn.open(root / "b.sock")
        async with asyncio.timeout(BOUND):
            assert b'"code":"busy"' in await b.reader.readline()
        await a.close()
        await _until(lambda: pool.used == 0)
        c = await RawConn.open(root / "b.sock")
        assert (await c.ask_json({"cmd": "version"}) or {})["ok"] is True
        await b.close()
        await c.close()


async def test_close_does_not_wait_for_idle_connections(sock: Path) -> None:
    async with serving(sock) as server:
        idle = [await RawConn.open(sock) for _ in range(5)]
        await _until(lambda: server.connection_count == 5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.close(drain_timeout=30)
        assert loop.time() - started < 5  # the drain bound is 30 s: idle ones are not waited for
        for conn in idle:
            assert await conn.closed_by_server()
            await conn.close()


class Parked:
    """A handler whose requests wait until released, and which counts what it was asked."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, req: Any, conn: Conn) -> WireModel:
        self.handled.append(req.cmd)
        self.entered.set()
        await self.release.wait()  # a long-poll, until the broker answers it
        return rs.Pong()


async def test_a_request_answered_during_the_drain_ends_its_connection(sock: Path) -> None:
    parked = Parked()
    server = SocketServer(
        sock, Principal("operator", "operator"), rq.HOST_VERBS, rq.HOST_REQUEST, parked
    )
    async with served(server):
        polling = await RawConn.open(sock)
        polling.writer.write(b'{"cmd": "ping"}\n{"cmd": "ping"}\n')  # and a second one queued
        await polling.writer.drain()
        async with asyncio.timeout(BOUND):
            await parked.entered.wait()
        closing = asyncio.create_task(server.close(drain_timeout=30))
        parked.release.set()  # answered while the drain runs, as the broker answers a recv
        async with asyncio.timeout(BOUND):  # not the 30 s drain bound
            await closing
            assert b'"result":"pong"' in await polling.reader.readline()
        assert await polling.closed_by_server()
        assert parked.handled == ["ping"]  # the request after it is not started
        await polling.close()


async def test_gated_verbs_wait_for_start_up_and_the_others_do_not(sock: Path) -> None:
    gate = StartupGate()
    handled: list[str] = []

    async def record(req: Any, conn: Conn) -> WireModel:
        handled.append(req.cmd)
        return await _version(req, conn)

    async with serving(sock, gate=gate, gated=frozenset({"list"})) as server:
        server._handler = record
        waiting = await RawConn.open(sock)
        waiting.writer.write(b'{"cmd": "list"}\n')
        await waiting.writer.drain()
        await _until(lambda: any(c.in_request for c in server._connections))
        other = await RawConn.open(sock)
        assert (await other.ask_json({"cmd": "version"}) or {})["ok"] is True
        assert handled == ["version"]  # the list still waits
        gate.open()
        async with asyncio.timeout(BOUND):
            assert b'"ok":true' in await waiting.reader.readline()
        assert (await waiting.ask_json({"cmd": "list"}) or {})["ok"] is True  # open for good
        await waiting.close()
        await other.close()


async def test_a_request_that_waits_too_long_for_start_up_is_busy_and_says_why(
    sock: Path,
) -> None:
    gate = StartupGate(wait=0.1)
    gate.starting("restoring agents")
    async with serving(sock, gate=gate, gated=frozenset({"list"})):
        conn = await RawConn.open(sock)
        reply = await conn.ask_json({"cmd": "list"}) or {}
        assert reply["code"] == "busy"
        assert reply["error"] == (
            "list: hive-core is still starting (restoring agents) after 0.1s; try again"
        )
        await conn.close()


async def test_a_daemon_stopping_during_start_up_answers_the_waiting_requests(
    sock: Path,
) -> None:
    gate = StartupGate()
    async with serving(sock, gate=gate, gated=frozenset({"list"})) as server:
        waiting = await RawConn.open(sock)
        waiting.writer.write(b'{"cmd": "list"}\n')
        await waiting.writer.drain()
        await _until(lambda: any(c.in_request for c in server._connections))
        gate.refuse(ShuttingDown("stopping before it finished starting"))
        gate.open()  # start-up ends after all: the refusal stands
        async with asyncio.timeout(BOUND):
            assert b'"code":"shutting_down"' in await waiting.reader.readline()
        later = await waiting.ask_json({"cmd": "list"}) or {}
        assert (later["code"], later["error"]) == (
            "shutting_down",
            "stopping before it finished starting",
        )
        await waiting.close()


@pytest.mark.parametrize("nofile", [256, 1024, 4096, 20_000, 1 << 20])
def test_connection_caps_stay_well_under_the_descriptor_limit(nofile: int) -> None:
    caps = ConnectionCaps.for_limit(nofile)
    total = caps.host + caps.manager + caps.agents_total
    if nofile >= 1024:
        assert total <= nofile * 3 // 4
        assert caps.agent >= 8 and caps.agents_total >= caps.agent


async def test_a_peer_that_reads_no_answers_is_cut_off(sock: Path) -> None:
    big = rs.VersionResult(protocol=1, server="x" * 200_000)

    async def bulky(req: Any, conn: Conn) -> WireModel:
        return big

    async with serving(sock, idle_timeout=0.2) as server:
        server._handler = bulky
        deaf = await RawConn.open(sock)
        deaf.writer.write(b'{"cmd": "version"}\n' * 50)  # ~10 MB of answers, never read
        await deaf.writer.drain()
        await _until(lambda: server.connection_count == 1)
        await _until(lambda: server.connection_count == 0)
        await deaf.close()
