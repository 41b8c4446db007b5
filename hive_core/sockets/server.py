"""A JSON-lines unix-socket server bound to one principal and one verb table.

This is the one place where requests are parsed and where `HiveError`s and
unexpected exceptions become wire errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from hive_core.errors import HiveError, StartupError
from hive_share import framing
from hive_share.models import WireModel
from hive_share.requests import ALL_VERBS, IDENTITY_FIELDS
from hive_share.responses import Error, ErrorCode

logger = logging.getLogger(__name__)

PrincipalKind = Literal["operator", "manager", "agent"]
_conn_ids = itertools.count(1)


@dataclass(frozen=True)
class Principal:
    """Who is on the other end: decided by the listener, never by the payload."""

    kind: PrincipalKind
    name: str


@dataclass(frozen=True)
class Conn:
    id: int
    principal: Principal
    is_open: Callable[[], bool] = lambda: True
    """False once the peer has closed its end (a long-poll must not lease to a dead client)."""


Handler = Callable[[Any, Conn], Awaitable[WireModel]]


def error(code: ErrorCode, message: str) -> Error:
    return Error(code=code, error=message)


def _validation_message(exc: ValidationError) -> tuple[ErrorCode, str]:
    errs = exc.errors(include_url=False)
    code: ErrorCode = (
        "invalid_name" if any(e["type"] == "invalid_name" for e in errs) else "invalid_request"
    )
    parts = []
    for e in errs[:5]:
        where = ".".join(str(p) for p in e["loc"][1:]) or "request"
        parts.append(f"{where}: {e['msg']}")
    return code, "; ".join(parts)


def prepare_socket_path(path: Path) -> None:
    """Clear a stale socket at `path`; refuse anything else that is there.

    Raises:
        StartupError: a live daemon answers on it, or it is not a socket.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise StartupError(f"{path} is a symlink; refusing to replace it")
    if not stat.S_ISSOCK(st.st_mode):
        raise StartupError(f"{path} exists and is not a socket; move it away")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        logger.info("removed stale socket %s", path)
        return
    except OSError as exc:
        raise StartupError(f"cannot probe {path}: {exc}") from None
    finally:
        probe.close()
    raise StartupError(f"another hive-core is already listening on {path}")


class SocketServer:
    """Serves one socket. Requests on one connection are answered in order."""

    def __init__(
        self,
        path: Path,
        principal: Principal,
        verbs: frozenset[str],
        adapter: TypeAdapter[Any],
        handler: Handler,
        *,
        on_close: Callable[[Conn], None] | None = None,
        max_connections: int = 64,
    ) -> None:
        self.path = path
        self.principal = principal
        self.verbs = verbs
        self._adapter = adapter
        self._handler = handler
        self._on_close = on_close
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and listen (mode 0600). Raises: StartupError."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        prepare_socket_path(self.path)
        self._server = await asyncio.start_unix_server(
            self._serve_connection, path=str(self.path), limit=framing.READER_LIMIT
        )
        os.chmod(self.path, 0o600)

    async def close(self, drain_timeout: float) -> None:
        """Stop accepting, let open requests finish within the bound, then cut the rest."""
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._connections:
            _, pending = await asyncio.wait(self._connections, timeout=drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = Conn(next(_conn_ids), self.principal, lambda: not reader.at_eof())
        if len(self._connections) >= self._max_connections:
            await _reply_and_close(writer, error("busy", "too many connections on this socket"))
            return
        self._connections.add(task)
        try:
            await self._request_loop(reader, writer, conn)
        except (ConnectionError, BrokenPipeError):
            logger.debug("connection %d on %s dropped", conn.id, self.path)
        finally:
            self._connections.discard(task)
            if self._on_close is not None:
                self._on_close(conn)
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def _request_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Conn
    ) -> None:
        while True:
            try:
                line = await framing.read_line(reader)
            except framing.FrameTooLong as exc:
                await _reply_and_close(writer, error("too_long", str(exc)))
                return
            except framing.FrameError as exc:
                await _reply_and_close(writer, error("malformed", str(exc)))
                return
            if line is None:
                return
            response = await self.dispatch(line, conn)
            writer.write(framing.encode_model(response))
            await writer.drain()

    async def dispatch(self, line: bytes, conn: Conn) -> WireModel:
        """Parse, authorise and run one request line; never raises."""
        try:
            raw = framing.decode(line)
        except framing.FrameError as exc:
            return error("malformed", str(exc))
        cmd = raw.get("cmd")
        if not isinstance(cmd, str):
            return error("malformed", 'a request needs a string "cmd" field')
        if cmd not in ALL_VERBS:
            return error("unknown_verb", f"unknown verb {cmd[:64]!a}")
        if cmd not in self.verbs:
            return error(
                "verb_not_allowed",
                f"verb {cmd!r} is not allowed on the {self.principal.kind} socket",
            )
        claims = sorted(IDENTITY_FIELDS & raw.keys())
        if claims:
            return error(
                "identity_claim",
                f"field {claims[0]!r} is not accepted: the socket decides who is asking",
            )
        try:
            request = self._adapter.validate_python(raw)
        except ValidationError as exc:
            code, message = _validation_message(exc)
            return error(code, f"{cmd}: {message}")
        try:
            return await self._handler(request, conn)
        except HiveError as exc:
            return Error(code=exc.code, error=exc.message)
        except Exception:
            logger.exception(
                "%s on %s socket (%s) failed", cmd, self.principal.kind, self.principal.name
            )
            return error("internal", f"{cmd} failed inside hive-core; see the daemon log")


async def _reply_and_close(writer: asyncio.StreamWriter, response: Error) -> None:
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        writer.write(framing.encode_model(response))
        await writer.drain()
