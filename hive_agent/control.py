"""The harness's own small socket: hive-core's pings and the turn controls, served as a task
of the harness's task group (`serve_control`)."""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import ValidationError

from hive_agent import __version__, unix_server
from hive_share import PROTOCOL_VERSION, framing
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import WireModel, dump

Control = (
    rq.Cancel
    | rq.NewSession
    | rq.SetModel
    | rq.Compact
    | rq.Events
    | rq.TurnStatus
    | rq.WebCode
    | rq.HiveSignals
    | rq.LoginControl
)
ControlHandler = Callable[[Control], Awaitable[WireModel]]


async def answer(line: bytes, controls: ControlHandler) -> WireModel:
    try:
        raw = framing.decode(line)
    except framing.FrameError as exc:
        return rs.Error(code="malformed", error=str(exc))
    cmd = raw.get("cmd")
    if not isinstance(cmd, str):
        return rs.Error(code="malformed", error='a request needs a string "cmd" field')
    if cmd not in rq.HARNESS_VERBS:
        code: rs.ErrorCode = "verb_not_allowed" if cmd in rq.ALL_VERBS else "unknown_verb"
        return rs.Error(code=code, error=f"verb {cmd[:64]!a} is not served by the harness")
    try:
        req = rq.HARNESS_REQUEST.validate_python(raw)
    except ValidationError as exc:
        return rs.Error(code="invalid_request", error=exc.errors(include_url=False)[0]["msg"])
    match req:
        case rq.Version():
            return rs.VersionResult(protocol=PROTOCOL_VERSION, server=f"hive-agent {__version__}")
        case rq.Ping():
            return rs.Pong()
        case _:  # every other harness verb is a control
            try:
                return await controls(req)
            except ValueError as exc:
                return rs.Error(code="invalid_request", error=str(exc))


def _clear_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise RuntimeError(f"{path} exists and is not a socket")
    os.unlink(path)


async def serve_control(
    path: Path,
    controls: ControlHandler,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Answer on `path` (mode 0600, replacing a stale socket left by an earlier run) until
    cancelled, each connection a task of the server's own task group; the socket file goes
    with it. Started once it listens."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _clear_stale(path)
    handler = functools.partial(_connection, controls=controls)
    await unix_server.serve(path, handler, task_status=task_status)


async def _connection(stream: anyio.abc.ByteStream, controls: ControlHandler) -> None:
    """One line in, one line out, until the peer closes; a line that is not one frame is
    answered with its error, and one too long also ends the connection."""
    lines = BufferedByteReceiveStream(stream)
    while True:
        try:
            line = await read_line(lines)
        except framing.FrameError as exc:
            code: rs.ErrorCode = (
                "too_long" if isinstance(exc, framing.FrameTooLong) else "malformed"
            )
            await stream.send(framing.encode(dump(rs.Error(code=code, error=str(exc)))))
            return
        if line is None:
            return
        await stream.send(framing.encode(dump(await answer(line, controls))))


async def read_line(lines: BufferedByteReceiveStream) -> bytes | None:
    """One line without its newline; `None` at a clean end of stream (`framing.read_line`
    over an anyio stream).

    Raises:
        FrameTooLong: the line is over `MAX_LINE`.
        FrameError: the stream ended in the middle of a line.
    """
    try:
        line = await lines.receive_until(b"\n", framing.READER_LIMIT)
    except anyio.IncompleteRead:
        if not lines.buffer:
            return None
        raise framing.FrameError("connection closed in the middle of a line") from None
    except anyio.DelimiterNotFound:
        raise framing.FrameTooLong(f"line exceeds the {framing.MAX_LINE}-byte limit") from None
    if len(line) > framing.MAX_LINE:
        raise framing.FrameTooLong(
            f"line of {len(line)} bytes exceeds the {framing.MAX_LINE}-byte limit"
        )
    return line
