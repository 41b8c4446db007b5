"""The blocking one-shot client against a real unix socket that answers scripted bytes."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_share import blocking

LIST = {"cmd": "list"}
AGENTS = b'{"ok":true,"result":"agents","agents":[{"name":"a","role":"agent","state":"stopped"}]}'


class Scripted:
    """Accepts one connection, reads one line, sends `chunks` one by one, then closes."""

    def __init__(self, path: Path, chunks: list[bytes]) -> None:
        self.got = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(1)
        self._chunks = chunks
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            while not self.got.endswith(b"\n"):
                data = conn.recv(4096)
                if not data:
                    break
                self.got += data
            for chunk in self._chunks:
                conn.sendall(chunk)

    def close(self) -> None:
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        self._sock.close()


@pytest.fixture
def path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hb", dir="/tmp") as tmp:
        yield Path(tmp) / "s.sock"


def serve(path: Path, *chunks: bytes) -> Scripted:
    return Scripted(path, list(chunks))


def test_an_answer_in_pieces_is_read_whole_and_checked(path: Path) -> None:
    server = serve(path, AGENTS[:10], AGENTS[10:], b"\n")
    answer = blocking.call(path, LIST, "agents")
    server.close()
    assert server.got == b'{"cmd":"list"}\n'
    assert answer["agents"] == [
        {
            "name": "a",
            "role": "agent",
            "state": "stopped",
            "pid": None,
            "uptime_seconds": None,
            "web_port": None,
            "alive": False,
            "status": "",
            "login": "unknown",
            "login_since": None,
            "login_expires_at": None,
            "deployed_commit": None,
            "model": None,
            "model_source": None,
            "turn_state": None,
            "needs_update": False,
            "stuck": [],
            "host": None,
        }
    ]


def test_a_missing_socket_is_not_running(path: Path) -> None:
    with pytest.raises(blocking.NotRunning, match="nothing is listening"):
        blocking.call(path, LIST, "agents")


def test_a_close_without_an_answer_is_a_lost_connection(path: Path) -> None:
    server = serve(path)
    with pytest.raises(blocking.ConnectionLost, match="without answering"):
        blocking.call(path, LIST, "agents")
    server.close()


def test_a_close_in_the_middle_of_a_line_is_a_lost_connection(path: Path) -> None:
    server = serve(path, AGENTS[:20])
    with pytest.raises(blocking.ConnectionLost, match="middle of a line"):
        blocking.call(path, LIST, "agents")
    server.close()


def test_an_error_answer_is_a_remote_error_with_its_code(path: Path) -> None:
    server = serve(path, b'{"ok":false,"result":"error","code":"unknown_agent","error":"no"}\n')
    with pytest.raises(blocking.RemoteError) as info:
        blocking.call(path, LIST, "agents")
    server.close()
    assert (info.value.code, info.value.message) == ("unknown_agent", "no")


def test_another_result_than_the_expected_one_is_refused(path: Path) -> None:
    server = serve(path, b'{"ok":true,"result":"pong"}\n')
    with pytest.raises(blocking.RemoteError, match="expected a agents answer, got pong"):
        blocking.call(path, LIST, "agents")
    server.close()


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b'{"ok":true,"result":"agents","agents":"none"}\n',
        b'{"ok":true,"result":"agents","agents":[],"extra":1}\n',
        b'{"ok":true,"result":"sent","id":99999999999999999999}\n',
    ],
)
def test_an_answer_the_schema_refuses_is_a_client_error(path: Path, line: bytes) -> None:
    server = serve(path, line)
    with pytest.raises(blocking.ClientError, match="unexpected answer") as info:
        blocking.call(path, LIST, "agents")
    server.close()
    assert type(info.value) is blocking.ClientError


def test_idempotency_keys_are_fresh_and_valid_for_send() -> None:
    keys = {blocking.new_idempotency_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys)
