"""The start-up gate: requests that need hive-core ready wait here until it is (bounded)."""

from __future__ import annotations

import asyncio

import anyio

from hive_core.errors import Busy, HiveError

READY_WAIT = 60.0
"""Seconds a request waits for hive-core to finish starting before it is answered `busy`."""


class StartupGate:
    """Holds requests until hive-core has finished starting.

    The sockets answer from the first moment, before the container backend runs,
    interrupted deploys are reconciled and the agents restored: a lifecycle request then
    would fail or race the restore, and `list` would show every agent stopped. So the
    requests that depend on it wait, at most `wait` seconds, and are then answered as if
    they had come once hive-core was ready. What the restore itself waits for (an agent's
    `alive`) never passes through here.
    """

    def __init__(self, wait: float = READY_WAIT) -> None:
        self._wait = wait
        self._settled = asyncio.Event()
        self._refusal: HiveError | None = None
        self.step = "opening its sockets"
        """What start-up is doing now; a request that waited too long is told."""

    def starting(self, step: str) -> None:
        self.step = step

    def open(self) -> None:
        """Start-up is done: let every request through, now and from now on."""
        self._settled.set()

    def refuse(self, error: HiveError) -> None:
        """Start-up will not be waited for (the daemon is stopping): answer the requests
        waiting, and those still to come, with `error`. No effect once open."""
        if not self._settled.is_set():
            self._refusal = error
            self._settled.set()

    async def wait(self, cmd: str) -> None:
        """Return once hive-core is ready.

        Raises:
            Busy: still starting after the wait.
            HiveError: what `refuse` was given.
        """
        if not self._settled.is_set():
            try:
                with anyio.fail_after(self._wait):
                    await self._settled.wait()
            except TimeoutError:
                raise Busy(
                    f"{cmd}: hive-core is still starting ({self.step}) after "
                    f"{self._wait:g}s; try again"
                ) from None
        if self._refusal is not None:
            raise self._refusal
