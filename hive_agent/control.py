"""The harness's own small socket: hive-core's pings and the turn controls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import ValidationError

from hive_agent import __version__
from hive_share import PROTOCOL_VERSION, framing
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import WireModel, dump

logger = logging.getLogger(__name__)

Control = (
    rq.Cancel
    | rq.NewSession
    | rq.SetModel
    | rq.Compact
    | rq.Events
    | rq.TurnStatus
    | rq.WebCode
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


async def start_control(path: Path, controls: ControlHandler) -> asyncio.Server:
    """Listen on `path` (mode 0600), replacing a stale socket left by an earlier run."""

    async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await framing.read_line(reader)
                except framing.FrameError as exc:
                    code: rs.ErrorCode = (
                        "too_long" if isinstance(exc, framing.FrameTooLong) else "malformed"
                    )
                    writer.write(framing.encode(dump(rs.Error(code=code, error=str(exc)))))
                    return
                if line is None:
                    return
                writer.write(framing.encode(dump(await answer(line, controls))))
                await writer.drain()
        except ConnectionError:
            logger.debug("control connection dropped")
        finally:
            writer.close()

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _clear_stale(path)
    server = await asyncio.start_unix_server(
        serve_connection, path=str(path), limit=framing.READER_LIMIT
    )
    os.chmod(path, 0o600)
    return server


async def stop_control(server: asyncio.Server, path: Path) -> None:
    server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
