"""Dashboard event streams held open against the bench daemon: some read everything as a
browser does, some never read at all."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import selectors
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from bench.broker import BenchError
from bench.daemon import Daemon
from hive_share import blocking

STALLED_RCVBUF = 4096


def _port(daemon: Daemon) -> int:
    return int((daemon.run_dir / "dashboard.port").read_text())


def _post(port: int, path: str, body: str, token: str = "") -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {
        "Host": f"127.0.0.1:{port}", "X-Hive-Request": "1", "Content-Type": "application/json",
        **({"Authorization": f"Bearer {token}"} if token else {}),
    }  # fmt: skip
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        answer: dict[str, object] = json.loads(response.read())
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {answer}")
    return answer


def login(daemon: Daemon) -> str:
    """A session token from a fresh login link, traded as the login page does."""
    got = blocking.call(daemon.host_socket, {"cmd": "login_link"}, "done")
    match = re.search(r"/login\?code=([\w-]+)", str(got["detail"]))
    if match is None:
        raise RuntimeError(f"no login code in {got['detail']!r}")
    answer = _post(_port(daemon), "/api/session", json.dumps({"code": match.group(1)}))
    return str(answer["token"])


def _open(port: int, token: str, stalled: bool) -> socket.socket:
    """An event stream, opened with a fresh one-use ticket as the page opens one."""
    ticket = str(_post(port, "/api/ticket", "{}", token)["ticket"])
    sock = socket.socket()
    if stalled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    request = f"GET /dashboard/stream?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    sock.sendall(f"{request}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the event stream answered {head[:40]!r}")
    return sock


def _drain_all(port: int, token: str, count: int, ready: int) -> None:
    """In a child process: open `count` streams, say so on fd `ready`, read them all until
    they close (one thread, a selector)."""
    socks = [_open(port, token, stalled=False) for _ in range(count)]
    os.write(ready, b"x")
    os.close(ready)
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, sock)
        while selector.get_map():
            for key, _ in selector.select():
                conn: socket.socket = key.data
                try:
                    data = conn.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(conn)
                    conn.close()


@contextmanager
def streams(daemon: Daemon, reading: int, stalled: int) -> Iterator[None]:
    """`reading` streams drained by a child process (so their reading costs the bench
    process nothing) and `stalled` ones never read, open for the duration of the block."""
    port, token = _port(daemon), login(daemon)
    stuck = [_open(port, token, stalled=True) for _ in range(stalled)]
    ready_r, ready_w = os.pipe()
    reader = multiprocessing.get_context("fork").Process(
        target=_drain_all, args=(port, token, reading, ready_w), daemon=True
    )
    reader.start()
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"x":
            raise RuntimeError("the stream reader did not start")
        yield
    finally:
        os.close(ready_r)
        reader.terminate()
        reader.join(timeout=10)
        for sock in stuck:
            sock.close()


# -- one event to many streams ---------------------------------------------------

FANOUT_TIMEOUT = 10.0
"""Bound on every reader receiving one event, and on a helper starting or reporting."""


def _bodies(buffer: bytearray, marker: re.Pattern[bytes]) -> list[int]:
    """The event numbers of the `sent` frames in the complete lines of `buffer` (consumed)."""
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    lines, rest = bytes(buffer[: end + 1]), bytes(buffer[end + 1 :])
    buffer[:] = rest
    return [int(m.group(1)) for m in marker.finditer(lines)]


def _fan_reader(port: int, token: str, count: int, events: int, conn: Connection) -> None:
    """In a helper process: open `count` streams, say `ready`, then note when each stream
    first shows each event's `sent` frame; say `got k` once all have event k, and send every
    receipt time (`time.time()`) when all `events` are in."""
    marker = re.compile(rb'"kind":"sent","message":\{[^\n]*?"body":"fanout (\d+)"')
    socks = [_open(port, token, stalled=False) for _ in range(count)]
    seen: list[dict[int, float]] = [{} for _ in socks]
    buffers = [bytearray() for _ in socks]
    done: set[int] = set()
    conn.send("ready")
    with selectors.DefaultSelector() as selector:
        for i, sock in enumerate(socks):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, i)
        while len(done) < events:
            ready = selector.select(FANOUT_TIMEOUT)
            if not ready:
                conn.send(f"stuck after {sorted(done)[-1:] or 'no'} events")
                return
            at = time.time()
            for key, _ in ready:
                i = key.data
                data = socks[i].recv(1 << 16)
                if not data:
                    conn.send(f"stream {i} closed")
                    return
                buffers[i] += data
                for k in _bodies(buffers[i], marker):
                    seen[i].setdefault(k, at)
                    if k not in done and all(k in s for s in seen):
                        done.add(k)
                        conn.send(f"got {k}")
    conn.send(seen)
    for sock in socks:
        sock.close()


def _expect(conn: Connection, what: str) -> object:
    if not conn.poll(FANOUT_TIMEOUT):
        raise BenchError(f"a stream reader sent nothing within {FANOUT_TIMEOUT:.0f}s")
    try:
        got: object = conn.recv()
    except EOFError:
        raise BenchError("a stream reader exited early (its error is above)") from None
    if isinstance(got, str) and got != what and not got.startswith(what):
        raise BenchError(f"a stream reader said {got!r}, expected {what!r}")
    return got


def fanout(daemon: Daemon, readers: int, helpers: int, events: int, to: str) -> list[float]:
    """Seconds from just before an operator `send` to `to` until each of `readers` streams
    (read by `helpers` processes, so the bench process is not the bottleneck) holds its
    `sent` frame, one event at a time, with one stalled stream open; every sample of every
    event. Each event is sent once every reader has the previous one."""
    port, token = _port(daemon), login(daemon)
    stuck = _open(port, token, stalled=True)
    context = multiprocessing.get_context("fork")
    pipes: list[Connection] = []
    procs: list[BaseProcess] = []
    try:
        for h in range(helpers):
            mine, theirs = context.Pipe()
            share = readers // helpers + (h < readers % helpers)
            p = context.Process(
                target=_fan_reader, args=(port, token, share, events, theirs), daemon=True
            )
            p.start()
            theirs.close()
            pipes.append(mine)
            procs.append(p)
        for conn in pipes:
            _expect(conn, "ready")
        sent_at: list[float] = []
        for k in range(events):
            request = {"cmd": "send", "to": to, "body": f"fanout {k}"}
            sent_at.append(time.time())
            blocking.call(daemon.host_socket, request, "sent")
            for conn in pipes:
                _expect(conn, f"got {k}")
        samples: list[float] = []
        for conn in pipes:
            got = _expect(conn, "")
            if not isinstance(got, list):
                raise BenchError(f"a stream reader sent {got!r}, not its receipt times")
            for stream in got:
                samples += [stream[k] - sent_at[k] for k in range(events)]
        if len(samples) != readers * events:
            raise BenchError(f"{len(samples)} receipts for {readers} streams × {events} events")
        return samples
    finally:
        for helper in procs:
            helper.terminate()
            helper.join(timeout=10)
        for conn in pipes:
            conn.close()
        stuck.close()
