"""Dashboard event streams held open against the bench daemon: some read everything as a
browser does, some never read at all."""

from __future__ import annotations

import http.client
import multiprocessing
import os
import re
import selectors
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from bench.daemon import Daemon
from hive_share import blocking

STALLED_RCVBUF = 4096


def _port(daemon: Daemon) -> int:
    return int((daemon.run_dir / "dashboard.port").read_text())


def login(daemon: Daemon) -> str:
    """A session cookie (`name=value`) from a fresh login link."""
    got = blocking.call(daemon.host_socket, {"cmd": "login_link"}, "done")
    match = re.search(r"/login\?code=[\w-]+", str(got["detail"]))
    if match is None:
        raise RuntimeError(f"no login code in {got['detail']!r}")
    port = _port(daemon)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", match.group(0), headers={"Host": f"127.0.0.1:{port}"})
        response = conn.getresponse()
        response.read()
        cookie = response.getheader("set-cookie") or ""
    finally:
        conn.close()
    return cookie.split(";")[0]


def _open(port: int, cookie: str, stalled: bool) -> socket.socket:
    sock = socket.socket()
    if stalled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    request = f"GET /dashboard/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    sock.sendall(f"{request}Cookie: {cookie}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the event stream answered {head[:40]!r}")
    return sock


def _drain_all(port: int, cookie: str, count: int, ready: int) -> None:
    """In a child process: open `count` streams, say so on fd `ready`, read them all until
    they close (one thread, a selector)."""
    socks = [_open(port, cookie, stalled=False) for _ in range(count)]
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
    port, cookie = _port(daemon), login(daemon)
    stuck = [_open(port, cookie, stalled=True) for _ in range(stalled)]
    ready_r, ready_w = os.pipe()
    reader = multiprocessing.get_context("fork").Process(
        target=_drain_all, args=(port, cookie, reading, ready_w), daemon=True
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
