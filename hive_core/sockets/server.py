"""A JSON-lines unix-socket server bound to one principal and one verb table (requests that
need hive-core ready wait at its `StartupGate`, hive_core/sockets/startup_gate.py).

This is the one place where requests are parsed and where `HiveError`s and
unexpected exceptions become wire errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import operator
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import Field, TypeAdapter, ValidationError

from hive_core.errors import HiveError, StartupError
from hive_core.sockets.limits import ConnectionPool
from hive_core.sockets.startup_gate import StartupGate
from hive_share import framing
from hive_share import requests as rq
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
    named = any(e["type"] == "invalid_name" for e in errs)
    code: ErrorCode = "invalid_name" if named else "invalid_request"
    wheres = [".".join(str(p) for p in e["loc"][1:]) or "request" for e in errs[:5]]
    return code, "; ".join(f"{where}: {e['msg']}" for where, e in zip(wheres, errs, strict=False))


@functools.cache
def _hot_adapter(verbs: frozenset[str]) -> TypeAdapter[Any] | None:
    """The broker's verbs among `verbs` as one adapter that parses a line (one per table)."""
    hot: dict[str, Any] = {"ack": rq.Ack, "recv": rq.Recv, "send": rq.Send}
    models = [model for verb, model in hot.items() if verb in verbs]
    kind: Any = functools.reduce(operator.or_, models) if models else None
    if len(models) > 1:
        kind = Annotated[kind, Field(discriminator="cmd")]
    return TypeAdapter(kind) if models else None


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
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
            logger.info("removed stale socket %s", path)
            return
        except OSError as exc:
            raise StartupError(f"cannot probe {path}: {exc}") from None
    raise StartupError(f"another hive-core is already listening on {path}")


IDLE_TIMEOUT = 30.0
"""Seconds a connection may take to send a complete line. A connection waiting for
its next request is held to it too, unless it holds leased messages (a harness in
the middle of a turn); a request being handled (a parked `recv`) is not."""
BUFFER_BUDGET = 8 * framing.MAX_LINE
"""Bytes of unfinished lines one socket buffers over all its connections."""
CHUNK = 64 * 1024
BURST_QUIET = 10.0
"""A cap hit less than this many seconds after the last report is counted, not logged."""


class _Refused(Exception):
    """The connection is closed on our side with this error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.reply = error(code, message)


class _Burst:
    """Logs the first hit of a limit, then at most once per `BURST_QUIET` with a count."""

    def __init__(self, what: str) -> None:
        self._what, self._last, self._missed = what, -BURST_QUIET, 0

    def hit(self) -> None:
        now = time.monotonic()
        if now - self._last < BURST_QUIET:
            self._missed += 1
            return
        more = f" ({self._missed} more since the last report)" if self._missed else ""
        logger.warning("%s%s", self._what, more)
        self._last, self._missed = now, 0


class _Overdue(Exception):
    """Set on a connection's reader when its line did not come by its deadline."""


@dataclass(eq=False)
class _Connection:
    conn: Conn
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    """Cancelled to cut this connection alone (the drain's bound, a peer gone)."""
    buf: bytearray = field(default_factory=bytearray)
    in_request: bool = False
    deadline: float | None = None
    """While a read waits for a line that must come in time: by when (loop time)."""
    timer: asyncio.TimerHandle | None = None


class SocketServer:
    """Serves one socket. Requests on one connection are answered in order.

    What one peer can cost is bounded: `max_connections` at a time (the next one
    is answered `busy` and closed), `IDLE_TIMEOUT` to send each line, and
    `BUFFER_BUDGET` bytes of unfinished lines over the whole socket.

    The `gated` verbs wait at `gate` until hive-core has finished starting; the others
    are answered at once.

    `serve` runs it as a task of its owner's task group (`await tg.start(server.serve)`),
    each connection a task of the server's own group: `close` drains and ends them, and a
    cancelled owner cuts them.
    """

    def __init__(
        self,
        path: Path,
        principal: Principal,
        verbs: frozenset[str],
        adapter: TypeAdapter[Any],
        handler: Handler,
        *,
        on_close: Callable[[Conn], None] | None = None,
        holds_work: Callable[[Conn], bool] = lambda conn: False,
        max_connections: int = 64,
        pool: ConnectionPool | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        buffer_budget: int = BUFFER_BUDGET,
        gate: StartupGate | None = None,
        gated: frozenset[str] = frozenset(),
    ) -> None:
        self.path = path
        self.principal = principal
        self.verbs = verbs
        self._adapter = adapter
        self._hot = _hot_adapter(verbs)
        self._handler = handler
        self._on_close = on_close
        self._holds_work = holds_work
        self._max_connections = max_connections
        self._pool = pool
        self._idle_timeout = idle_timeout
        self._buffer_budget = buffer_budget
        self._gate = gate
        self._gated = gated
        self._buffered = 0
        self._server: asyncio.Server | None = None
        self._tg: TaskGroup | None = None
        self._closing = False
        self._connections: set[_Connection] = set()
        self._drained: anyio.Event | None = None
        """Set when the last connection has ended, while `close` waits for it."""
        self._stop: anyio.Event | None = None
        """Set by `close` once drained: `serve` returns."""
        self._ended: anyio.Event | None = None
        """Set when `serve` has returned."""
        where = f"{principal.kind} socket {path}"
        self._full = _Burst(f"{where}: {max_connections} connections open; refusing more (busy)")
        self._slow = _Burst(f"{where}: closed a connection that sent no complete line "
                            f"within {idle_timeout:.0f}s")  # fmt: skip
        self._pool_empty = _Burst(f"{where}: the shared pool of {pool.size if pool else 0} "
                                  "agent connections is used up; refusing more (busy)")  # fmt: skip
        self._deaf = _Burst(f"{where}: closed a connection that read no answer "
                            f"within {idle_timeout:.0f}s")  # fmt: skip
        self._fat = _Burst(f"{where}: unfinished lines reached {buffer_budget} bytes; "
                           "closed the connection adding to them")  # fmt: skip

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind (mode 0600) and listen, report started, and serve until `close` has drained
        the connections; cancelled, stop listening and cut them. Raises StartupError (before
        it listens)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        prepare_socket_path(self.path)
        self._stop, self._ended = anyio.Event(), anyio.Event()
        # Bound but not yet accepting: no connection arrives before its group exists.
        self._server = server = await asyncio.start_unix_server(
            self._accept, path=str(self.path), limit=CHUNK, start_serving=False
        )
        try:
            os.chmod(self.path, 0o600)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    await server.start_serving()
                    task_status.started()
                    await self._stop.wait()
                finally:
                    self._stop_listening()  # then the group cuts what is left
        finally:
            self._tg = None
            self._stop_listening()
            self._ended.set()

    def _stop_listening(self) -> None:
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def close(self, drain_timeout: float) -> None:
        """Stop accepting, close idle connections at once, give requests being handled
        `drain_timeout` seconds to finish, then cut the rest; returns once `serve` has.

        A connection is closed as soon as its request is answered: a long-poll the broker
        has answered `shutting_down`, or a busy client's request, does not hold the drain
        open waiting for its next request.
        """
        if self._server is None or self._stop is None or self._ended is None:
            return  # not serving, or already closing
        self._stop_listening()
        for c in self._connections:
            if not c.in_request:
                c.writer.close()  # its read sees the end of the stream and the task ends
            elif c.reader.at_eof():
                c.scope.cancel()  # nobody is left to read the answer (a dead harness's recv)
        if self._connections:
            self._drained = anyio.Event()
            with anyio.move_on_after(drain_timeout):
                await self._drained.wait()
            for c in self._connections:
                c.scope.cancel()
            if self._connections:
                await self._drained.wait()
        self._stop.set()
        await self._ended.wait()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection: a task of this server's group."""
        if self._tg is None or self._closing:
            writer.close()  # accepted as the server stopped listening
            return
        self._tg.start_soon(self._serve_connection, reader, writer)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = Conn(next(_conn_ids), self.principal, lambda: not reader.at_eof())
        if len(self._connections) >= self._max_connections:
            self._full.hit()
            await _reply_and_close(writer, error("busy", "too many connections on this socket"))
            return
        if self._pool is not None and not self._pool.take():
            self._pool_empty.hit()
            await _reply_and_close(writer, error("busy", "too many connections to hive-core"))
            return
        c = _Connection(conn, reader, writer)
        self._connections.add(c)
        try:
            with c.scope:
                await self._request_loop(c)
            if c.scope.cancelled_caught:
                logger.debug("connection %d on %s cut at shutdown", conn.id, self.path)
        except _Refused as exc:
            await _reply_and_close(writer, exc.reply)
        except (ConnectionError, BrokenPipeError):
            logger.debug("connection %d on %s dropped", conn.id, self.path)
        except Exception:  # a task of the server's group: what escapes it would end the daemon
            logger.exception("connection %d on %s failed", conn.id, self.path)
        finally:
            if c.timer is not None:
                c.timer.cancel()
            self._connections.discard(c)
            if not self._connections and self._drained is not None:
                self._drained.set()
            if self._pool is not None:
                self._pool.give_back()
            self._buffered -= len(c.buf)
            if self._on_close is not None:
                self._on_close(conn)
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def _request_loop(self, c: _Connection) -> None:
        while not self._closing:  # at shutdown, a connection ends once its request is answered
            try:
                line = await self._next_line(c)
            except framing.FrameTooLong as exc:
                raise _Refused("too_long", str(exc)) from None
            except framing.FrameError as exc:
                raise _Refused("malformed", str(exc)) from None
            if line is None or self._closing:
                return  # a line that arrived as the drain began is not started
            c.in_request = True
            try:
                response = await self.dispatch(line, c.conn)
                if c.writer.is_closing():
                    # Shut while the line was on its way in (close() saw no request yet);
                    # uvloop raises on a write to a closed transport.
                    return
                c.writer.write(framing.encode_model(response))
                if c.writer.transport.get_write_buffer_size() == 0:
                    continue  # the kernel took it all: nothing to wait for
                try:
                    with anyio.fail_after(self._idle_timeout):
                        await c.writer.drain()
                except TimeoutError:
                    self._deaf.hit()
                    return  # a peer that reads no answers holds them in our memory: cut it
            finally:
                c.in_request = False

    async def _next_line(self, c: _Connection) -> bytes | None:
        """The next complete line without its newline; None at a clean end of stream.

        Raises:
            FrameTooLong: the line is over `MAX_LINE`.
            FrameError: the stream ended in the middle of a line.
            _Refused: the line took too long, or the socket's buffer budget ran out.
        """
        deadline = None if c.buf or self._holds_work(c.conn) else self._deadline()
        scanned = 0
        while (newline := c.buf.find(b"\n", scanned)) < 0:
            if len(c.buf) > framing.MAX_LINE:
                raise framing.FrameTooLong(f"line exceeds the {framing.MAX_LINE}-byte limit")
            scanned = len(c.buf)
            if c.buf and deadline is None:
                deadline = self._deadline()  # a line has begun: it must end in time
            chunk = await self._read(c, deadline)
            if not chunk:
                if c.buf:
                    raise framing.FrameError("connection closed in the middle of a line")
                return None
            if self._buffered + len(chunk) > self._buffer_budget:
                self._fat.hit()
                raise _Refused("busy", "this socket is buffering too much; try again")
            if not c.buf and chunk.find(b"\n") == len(chunk) - 1:
                return chunk[:-1]  # one whole line, the usual: nothing to buffer (CHUNK bytes)
            c.buf += chunk
            self._buffered += len(chunk)
        line = bytes(c.buf[:newline])
        del c.buf[: newline + 1]
        self._buffered -= newline + 1
        if len(line) > framing.MAX_LINE:
            raise framing.FrameTooLong(f"line of {len(line)} bytes exceeds the limit")
        return line

    async def _read(self, c: _Connection, deadline: float | None) -> bytes:
        """The next chunk from the peer ("" at the end of its stream), by `deadline`.

        Raises:
            _Refused: nothing came by `deadline`.
        """
        if deadline is None:  # a lease holder between two requests: no deadline
            return await c.reader.read(CHUNK)
        c.deadline = deadline
        if c.timer is None:
            c.timer = asyncio.get_running_loop().call_at(deadline, self._check_deadline, c)
        with contextlib.suppress(_Overdue):
            chunk = await c.reader.read(CHUNK)
            c.deadline = None  # (left set when cut: the connection's end cancels the timer)
            if not isinstance(c.reader.exception(), _Overdue):  # (it may pass as the chunk waits)
                return chunk
        self._slow.hit()
        raise _Refused("malformed", f"no complete line within {self._idle_timeout:.0f}s")

    def _check_deadline(self, c: _Connection) -> None:
        """`c`'s one timer (not one per read): a read past its deadline ends with `_Overdue`."""
        c.timer = None
        if c.deadline is not None and not c.writer.is_closing():
            loop = asyncio.get_running_loop()
            if loop.time() < c.deadline:
                c.timer = loop.call_at(c.deadline, self._check_deadline, c)
            else:
                c.reader.set_exception(_Overdue())

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._idle_timeout

    async def dispatch(self, line: bytes, conn: Conn) -> WireModel:
        """Parse, authorise and run one request line; never raises. A plain-ASCII `send`, `recv`
        or `ack` is parsed by its model at once; any other line (or one that fails) goes on."""
        if self._hot is not None and line.isascii() and b"\\" not in line:
            try:
                request = self._hot.validate_json(line)
                return await self._run(request.cmd, request, conn)
            except ValidationError:
                pass  # (never from `_run`) the general way says what is wrong
        try:
            raw = framing.decode(line)
        except framing.FrameError as exc:
            return error("malformed", str(exc))
        return await self.dispatch_raw(raw, conn)

    async def dispatch_raw(self, raw: dict[str, Any], conn: Conn) -> WireModel:
        """Authorise and run one decoded request, as if it came on this socket; never
        raises. The dashboard's actions come this way, as the operator's."""
        cmd = raw.get("cmd")
        if not isinstance(cmd, str):
            return error("malformed", 'a request needs a string "cmd" field')
        if cmd not in ALL_VERBS:
            return error("unknown_verb", f"unknown verb {cmd[:64]!a}")
        if cmd not in self.verbs:
            where = self.principal.kind
            return error("verb_not_allowed", f"verb {cmd!r} is not allowed on the {where} socket")
        if claims := sorted(IDENTITY_FIELDS & raw.keys()):
            why = "is not accepted: the socket decides who is asking"
            return error("identity_claim", f"field {claims[0]!r} {why}")
        try:
            request = self._adapter.validate_python(raw)
        except ValidationError as exc:
            code, message = _validation_message(exc)
            return error(code, f"{cmd}: {message}")
        return await self._run(cmd, request, conn)

    async def _run(self, cmd: str, request: Any, conn: Conn) -> WireModel:
        """Run one valid request (after the start-up gate, for a gated verb)."""
        try:
            if self._gate is not None and cmd in self._gated:
                await self._gate.wait(cmd)
            return await self._handler(request, conn)
        except HiveError as exc:
            return Error(code=exc.code, error=exc.message)
        except Exception:
            who = self.principal
            logger.exception("%s on %s socket (%s) failed", cmd, who.kind, who.name)
            return error("internal", f"{cmd} failed inside hive-core; see the daemon log")


async def _reply_and_close(writer: asyncio.StreamWriter, response: Error) -> None:
    # `drain` raises what the reader was given (`_Overdue`); the close still flushes.
    with contextlib.suppress(ConnectionError, BrokenPipeError, _Overdue):
        writer.write(framing.encode_model(response))
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        await writer.wait_closed()
