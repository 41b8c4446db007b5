from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hive_agent.relay import BUFFER, relay
from hive_agent.relay import command as relay_command

WAIT = 5.0


@dataclass
class Rig:
    """The relay in a thread between two pipes (claude's side) and a socket (the harness)."""

    server: socket.socket
    stdin_w: int
    stdout_r: int
    done: Future[None]
    stdin_closed: bool = False

    def close_stdin(self) -> None:
        os.close(self.stdin_w)
        self.stdin_closed = True

    def recv_server(self, n: int) -> bytes:
        """Exactly `n` bytes the relay sent to the server, or fewer if it shut down."""
        out = b""
        while len(out) < n:
            chunk = self.server.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def read_stdout(self, n: int) -> bytes:
        """Exactly `n` bytes the relay wrote to stdout (bounded wait)."""
        out = b""
        while len(out) < n:
            ready, _, _ = select.select([self.stdout_r], [], [], WAIT)
            assert ready, f"stdout stalled after {len(out)} of {n} bytes"
            chunk = os.read(self.stdout_r, n - len(out))
            assert chunk, "stdout closed early"
            out += chunk
        return out

    def join(self) -> None:
        """Wait for the relay to return; re-raises whatever it raised."""
        self.done.result(timeout=WAIT)


@pytest.fixture
def rig() -> Iterator[Rig]:
    client, server = socket.socketpair()
    server.settimeout(WAIT)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    executor = ThreadPoolExecutor(max_workers=1)
    r = Rig(server, stdin_w, stdout_r, executor.submit(relay, client, stdin_r, stdout_w))
    try:
        yield r
    finally:
        server.close()  # lets a relay still running return
        executor.shutdown(wait=True)
        for fd in (stdin_r, stdout_r, stdout_w):
            os.close(fd)
        if not r.stdin_closed:
            os.close(stdin_w)
        client.close()


def test_bytes_from_stdin_reach_the_server(rig: Rig) -> None:
    os.write(rig.stdin_w, b'{"jsonrpc":"2.0","id":1}\n')
    assert rig.recv_server(25) == b'{"jsonrpc":"2.0","id":1}\n'


def test_bytes_from_the_server_reach_stdout(rig: Rig) -> None:
    rig.server.sendall(b'{"jsonrpc":"2.0","result":{}}\n')
    assert rig.read_stdout(30) == b'{"jsonrpc":"2.0","result":{}}\n'


def test_payloads_larger_than_the_buffer_arrive_intact_both_ways(rig: Rig) -> None:
    up = bytes(range(256)) * (3 * BUFFER // 256 + 7)
    down = bytes(reversed(range(256))) * (3 * BUFFER // 256 + 11)
    received_up: list[bytes] = []

    def write_stdin() -> None:
        view = memoryview(up)
        while view:
            view = view[os.write(rig.stdin_w, view) :]

    def serve() -> None:
        # Like the harness: reading and writing at once, so neither direction stalls the other.
        sender = threading.Thread(target=rig.server.sendall, args=(down,))
        sender.start()
        received_up.append(rig.recv_server(len(up)))
        sender.join(WAIT)

    helpers = [threading.Thread(target=write_stdin), threading.Thread(target=serve)]
    for h in helpers:
        h.start()
    received_down = rig.read_stdout(len(down))
    for h in helpers:
        h.join(WAIT)
        assert not h.is_alive()
    assert received_down == down
    assert received_up == [up]


def test_stdin_eof_shuts_the_write_side_while_server_data_still_arrives(rig: Rig) -> None:
    os.write(rig.stdin_w, b"last request\n")
    rig.close_stdin()
    assert rig.recv_server(13) == b"last request\n"
    assert rig.server.recv(1) == b""  # the relay's write side is shut
    rig.server.sendall(b"late answer\n")
    assert rig.read_stdout(12) == b"late answer\n"
    assert not rig.done.done()
    rig.server.close()
    rig.join()


def test_the_relay_returns_when_the_server_closes(rig: Rig) -> None:
    rig.server.sendall(b"bye\n")
    rig.server.close()
    rig.join()
    assert rig.read_stdout(4) == b"bye\n"


def test_the_command_claude_runs_relays_without_site_packages(tmp_path: Path) -> None:
    # `-I -S`: nothing beyond the standard library is importable, so an import of the
    # package (or of pydantic) creeping into relay.py fails here.
    path = tmp_path / "mcp.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(WAIT)
        proc = subprocess.Popen(
            relay_command(),
            env={**os.environ, "HIVE_MCP_SOCKET": str(path)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(WAIT)
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(b'{"jsonrpc":"2.0","id":1,"method":"initialize"}\n')
                proc.stdin.flush()
                assert conn.recv(4096) == b'{"jsonrpc":"2.0","id":1,"method":"initialize"}\n'
                conn.sendall(b'{"jsonrpc":"2.0","id":1,"result":{}}\n')
                assert proc.stdout.readline() == b'{"jsonrpc":"2.0","id":1,"result":{}}\n'
            proc.stdin.close()
            assert proc.wait(timeout=WAIT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stderr is not None
            errors = proc.stderr.read()
            proc.stderr.close()
            if proc.stdout is not None:
                proc.stdout.close()
    assert errors == b""
    assert relay_command()[1:3] == ["-I", "-S"]
