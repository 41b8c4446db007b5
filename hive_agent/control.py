"""The harness's own small socket, where hive-core pings it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from pathlib import Path

from pydantic import ValidationError

from hive_agent import __version__
from hive_share import PROTOCOL_VERSION, framing
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import WireModel, dump

logger = logging.getLogger(__name__)


def _answer(line: bytes) -> WireModel:
    try:
        req = rq.HARNESS_REQUEST.validate_python(framing.decode(line))
    except framing.FrameError as exc:
        return rs.Error(code="malformed", error=str(exc))
    except ValidationError as exc:
        return rs.Error(code="invalid_request", error=exc.errors(include_url=False)[0]["msg"])
    match req:
        case rq.Version():
            return rs.VersionResult(protocol=PROTOCOL_VERSION, server=f"hive-agent {__version__}")
        case rq.Ping():
            return rs.Pong()


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await framing.read_line(reader)
            except framing.FrameError as exc:
                writer.write(framing.encode(dump(rs.Error(code="too_long", error=str(exc)))))
                return
            if line is None:
                return
            writer.write(framing.encode(dump(_answer(line))))
            await writer.drain()
    except ConnectionError:
        logger.debug("control connection dropped")
    finally:
        writer.close()


def _clear_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise RuntimeError(f"{path} exists and is not a socket")
    os.unlink(path)


async def start_control(path: Path) -> asyncio.Server:
    """Listen on `path` (mode 0600), replacing a stale socket left by an earlier run."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _clear_stale(path)
    server = await asyncio.start_unix_server(
        _serve_connection, path=str(path), limit=framing.READER_LIMIT
    )
    os.chmod(path, 0o600)
    return server


async def stop_control(server: asyncio.Server, path: Path) -> None:
    server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
