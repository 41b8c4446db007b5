"""Raw line-level access to a socket, for sending what a well-behaved client never would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hive_share.framing import READER_LIMIT


class RawConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path) -> RawConn:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=READER_LIMIT * 2)
        return cls(reader, writer)

    async def ask(self, line: bytes) -> dict[str, Any] | None:
        """Send one line; the parsed reply, or None when the server closed the connection."""
        self.writer.write(line + b"\n")
        await self.writer.drain()
        async with asyncio.timeout(15):
            reply = await self.reader.readline()
        if not reply:
            return None
        value: dict[str, Any] = json.loads(reply)
        return value

    async def ask_json(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return await self.ask(json.dumps(obj).encode())

    async def closed_by_server(self) -> bool:
        async with asyncio.timeout(15):
            return await self.reader.read(1) == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            return
