"""A small async client for the hive sockets, used by the harness, the tests and the bench.

Exceptions:
    ClientError
    ├── NotRunning      the socket is missing or refuses connections
    ├── ConnectionLost  the connection dropped before a response arrived
    └── RemoteError     the server answered with `ok: false` (has `.code`)

The tree lives in `hive_share.blocking` (the standard-library client the CLI uses).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TypeVar

from hive_share import framing
from hive_share.blocking import (
    ClientError,
    ConnectionLost,
    NotRunning,
    RemoteError,
    new_idempotency_key,
)
from hive_share.models import WireModel
from hive_share.responses import RESPONSE, Error, Response

__all__ = [
    "ClientError",
    "ConnectionLost",
    "HiveClient",
    "NotRunning",
    "RemoteError",
    "new_idempotency_key",
]

R = TypeVar("R", bound=WireModel)


class HiveClient:
    """One kept-open connection; requests are sent one at a time."""

    def __init__(self, path: str | Path, *, connect_timeout: float = 5.0) -> None:
        self.path = str(path)
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> HiveClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection.

        Raises:
            NotRunning: the socket file is missing or nobody listens on it.
        """
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self.path, limit=framing.READER_LIMIT
                )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotRunning(f"nothing is listening on {self.path} ({exc.strerror})") from None
        except TimeoutError:
            raise NotRunning(f"timed out connecting to {self.path}") from None

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            # The peer may already be gone; there is nothing left to flush then.
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def request(self, req: WireModel) -> Response:
        """Send one request and return the parsed response (errors included).

        Raises:
            ConnectionLost: the connection dropped before a full response line.
        """
        async with self._lock:
            if self._writer is None:
                await self.connect()
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(framing.encode_model(req))
                await self._writer.drain()
                line = await framing.read_line(self._reader)
            except (ConnectionError, framing.FrameError) as exc:
                await self.close()
                raise ConnectionLost(f"connection to {self.path} lost: {exc}") from None
            if line is None:
                await self.close()
                raise ConnectionLost(f"{self.path} closed the connection without answering")
            return RESPONSE.validate_json(line)

    async def call(self, req: WireModel, expect: type[R]) -> R:
        """Send a request and return its success response.

        Raises:
            RemoteError: the server answered with an error.
            ConnectionLost: see `request`.
        """
        resp = await self.request(req)
        if isinstance(resp, Error):
            raise RemoteError(resp.code, resp.error)
        if not isinstance(resp, expect):
            raise RemoteError("internal", f"expected a {expect.__name__} response, got {resp!r}")
        return resp
