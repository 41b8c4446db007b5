"""One request and its answer over a blocking unix socket, standard library only; and the
client error tree that `hive_share.client` shares.

The `hive-core` client commands use `call` instead of `HiveClient`: asyncio and
pydantic would cost them several times a bare interpreter start. Answers are
checked against the stored wire schema (`hive_share.schema`).

Exceptions:
    ClientError
    ├── NotRunning      the socket is missing or refuses connections
    ├── ConnectionLost  the connection dropped before a response arrived
    └── RemoteError     the server answered with `ok: false` (has `.code`)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from hive_share import framing, schema

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the connection itself; the answer may take as long as the verb does."""


class ClientError(Exception):
    """Base of every client-side failure."""


class NotRunning(ClientError):
    """Nothing is listening on the socket."""


class ConnectionLost(ClientError):
    """The connection closed before a response arrived; the request may have run."""


class RemoteError(ClientError):
    """The server refused the request."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_idempotency_key() -> str:
    """A fresh key for one logical send; reuse it on every retry of that send."""
    return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, without importing uuid


def call(path: str | Path, request: dict[str, Any], expect: str) -> dict[str, Any]:
    """Send `request` on a fresh connection; return the answer tagged `result: expect`.

    Raises:
        NotRunning: nobody listens on `path`.
        ConnectionLost: the connection dropped before a full answer line.
        RemoteError: the server answered with an error, or with another result.
        ClientError: the answer is not one the wire schema allows.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        _connect(sock, str(path))
        try:
            sock.sendall(framing.encode(request))
            line = _read_line(sock, str(path))
        except ConnectionError as exc:
            raise ConnectionLost(f"connection to {path} lost: {exc}") from None
    try:
        answer: dict[str, Any] = schema.check("response", framing.decode(line))
    except (framing.FrameError, schema.SchemaError) as exc:
        raise ClientError(f"unexpected answer from {path}: {exc}") from None
    if answer["result"] == "error":
        raise RemoteError(answer["code"], answer["error"])
    if answer["result"] != expect:
        raise RemoteError("internal", f"expected a {expect} answer, got {answer['result']}")
    return answer


def _connect(sock: socket.socket, path: str) -> None:
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NotRunning(f"nothing is listening on {path} ({exc.strerror})") from None
    except TimeoutError:
        raise NotRunning(f"timed out connecting to {path}") from None
    except OSError as exc:
        raise ClientError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    sock.settimeout(None)


def _read_line(sock: socket.socket, path: str) -> bytes:
    buffer = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            if buffer:
                raise ConnectionLost(f"{path} closed the connection in the middle of a line")
            raise ConnectionLost(f"{path} closed the connection without answering")
        start = len(buffer)
        buffer += chunk
        end = buffer.find(b"\n", start)
        if end >= 0:
            return bytes(buffer[:end])
        if len(buffer) > framing.MAX_LINE:
            raise ConnectionLost(f"the answer from {path} exceeds {framing.MAX_LINE} bytes")
