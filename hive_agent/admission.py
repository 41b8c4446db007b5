"""Turn admission, the harness's side: before a turn starts its claude, the harness asks
hive-core for a place among the turns the hive runs at once (`turn_slot take`), on a
connection of its own that it keeps for the turn. It says when its claude is up
(`started`, at claude's `system/init`), so the next turn may start, and closing the
connection as the turn ends gives the place back (as does the harness dying)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio.abc

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient, RemoteError

SLOT_WAIT = 60.0
"""Seconds one `take` waits before the harness asks again (its place in line is kept)."""


class Place:
    """One turn's place: taken, told that claude is up, given back."""

    def __init__(self, socket: Path, tasks: anyio.abc.TaskGroup) -> None:
        self._client: HiveClient | None = HiveClient(socket)
        self._tasks = tasks
        self._told = False

    async def take(
        self, oldest: int, on_wait: Callable[[rs.TurnSlotState], Awaitable[None]]
    ) -> None:
        """Wait until hive-core grants the place; `on_wait` hears the line once if the turn
        must wait. A cancel (or an error) leaves the connection to `give_back`.

        Raises:
            ClientError: hive-core could not be reached or refused.
        """
        assert self._client is not None
        wait = 0.0
        while True:
            req = rq.TurnSlot(cmd="turn_slot", action="take", wait_seconds=wait, oldest=oldest)
            try:
                got = await self._client.call(req, rs.TurnSlotState)
            except RemoteError as exc:
                if exc.code != "unknown_verb":
                    raise
                await self.give_back()  # a hive-core older than admission: every turn runs
                return
            if got.granted:
                return
            if wait == 0.0:
                await on_wait(got)
            wait = SLOT_WAIT

    def claude_up(self) -> None:
        """The turn's claude is up (a hook of the stream's reader): say so, once."""
        if self._client is not None and not self._told:
            self._told = True
            self._tasks.start_soon(self._started, self._client)

    async def _started(self, client: HiveClient) -> None:
        if client is not self._client:
            return  # the turn ended first: its place is given back already
        with contextlib.suppress(ClientError):  # a lost connection gave the place back
            await client.call(rq.TurnSlot(cmd="turn_slot", action="started"), rs.TurnSlotState)

    async def give_back(self) -> None:
        """End the hold: close the connection (hive-core frees the place)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()
