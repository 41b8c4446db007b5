"""What each harness reports about itself (alive, status, login), and hive-core's ping to it."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any, Literal

import anyio

from hive_share import framing
from hive_share.live import TurnState
from hive_share.models import LoginStatus, ModelSource, WireModel, dump
from hive_share.requests import Ping

PING_TIMEOUT = 2.0

WaitOutcome = Literal["alive", "exited", "timeout"]


class Liveness:
    def __init__(self) -> None:
        self._alive_pid: dict[str, int] = {}
        self._exited_pid: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self.status: dict[str, str] = {}
        self.login: dict[str, LoginStatus] = {}
        self.login_since: dict[str, float] = {}
        """When each harness reported its current login state."""
        self.login_expires: dict[str, float] = {}
        """When each login stops working by itself, where the harness knows."""
        self.versions: dict[str, str] = {}
        """The hyperhive version each harness last reported itself alive with."""
        self.last_exit: dict[str, int] = {}
        """Exit code of each agent's last harness process."""
        self.models: dict[str, str] = {}
        self.model_sources: dict[str, ModelSource] = {}
        """The model each harness said its next turn runs."""
        self.turn_state: dict[str, TurnState] = {}
        """Each harness's last reported turn state."""
        self.problems: dict[str, list[str]] = {}
        """What each harness's start check found wrong (empty: nothing)."""

    def _event(self, name: str) -> asyncio.Event:
        return self._changed.setdefault(name, asyncio.Event())

    def report_alive(
        self,
        name: str,
        pid: int,
        model: str | None = None,
        problems: list[str] | None = None,
        model_source: ModelSource | None = None,
    ) -> None:
        self._alive_pid[name] = pid
        self.turn_state[name] = "idle"  # a harness reports alive before its first turn
        if model is not None:
            self.models[name] = model
        if model_source is not None:
            self.model_sources[name] = model_source
        self.problems[name] = list(problems or [])
        self._event(name).set()

    def is_alive(self, name: str, pid: int | None) -> bool:
        """Has the harness with `pid` reported itself alive (and not exited since)?"""
        return pid is not None and self._alive_pid.get(name) == pid

    def report_exit(self, name: str, pid: int) -> None:
        if self._alive_pid.get(name) == pid:
            del self._alive_pid[name]
            self.turn_state.pop(name, None)
        self._exited_pid[name] = pid
        self._event(name).set()

    async def wait_alive(self, name: str, pid: int, within: float) -> WaitOutcome:
        """Wait until the harness with `pid` reports itself alive, or exits."""
        event = self._event(name)
        deadline = anyio.current_time() + within
        while True:
            event.clear()
            if self._alive_pid.get(name) == pid:
                return "alive"
            if self._exited_pid.get(name) == pid:
                return "exited"
            if anyio.current_time() >= deadline:
                return "timeout"
            with anyio.CancelScope(deadline=deadline):
                await event.wait()


async def harness_call(path: Path, request: WireModel, limit: float) -> dict[str, Any]:
    """Send one request to the harness listening at `path` and return its decoded answer.

    Only a real socket is connected to (the directory is the agent's to write).

    Raises:
        OSError: no socket there, or the connection failed.
        TimeoutError: no answer within `limit` seconds.
        ValueError: the answer is not one JSON object line.
    """
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise ConnectionRefusedError(f"{path} is not a socket")
    with anyio.fail_after(limit):
        reader, writer = await asyncio.open_unix_connection(str(path), limit=framing.READER_LIMIT)
        try:
            writer.write(framing.encode(dump(request)))
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    return framing.decode(line.rstrip(b"\n"))


async def ping(path: Path) -> bool:
    """Ask the harness listening at `path` for a pong; False on any failure.

    Only a real socket is connected to: the path lies in a directory the agent
    can write, so a symlink planted there is never followed.
    """
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
        with anyio.fail_after(PING_TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=4096)
            try:
                writer.write(framing.encode(dump(Ping(cmd="ping"))))
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
        reply = framing.decode(line.rstrip(b"\n"))
    except (OSError, TimeoutError, ValueError):
        return False
    return reply.get("ok") is True and reply.get("result") == "pong"
