"""What each turn cost, told to hive-core (`turn_usage`, its budgets and `hive-core usage`):
the figures of the turn's stats row, never lost.

Every row starts unreported (`turn_stats.PENDING`) and is marked `REPORTED` only once
hive-core answered `done`; one that hive-core refused as invalid is marked `REFUSED` and
never sent again. A send that fails leaves the row, and every row after it, for the next
flush: at the harness's start, after each turn, and when the turn loop reconnected to
hive-core. Rows go oldest first; hive-core treats `turn_id` as idempotent, so a row whose
answer was lost is simply sent again.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from hive_agent.stuck_watch import why
from hive_agent.turn_stats import REFUSED, REPORTED, TurnStats
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient, RemoteError

logger = logging.getLogger(__name__)

BATCH = 100
"""Rows read from the file at a time."""
CALL_WAIT = 30.0
"""Seconds one report may take before the flush gives up until the next."""
REFUSALS = frozenset({"invalid_request", "malformed", "too_long"})
"""hive-core's error codes that say the row itself is wrong: sending it again cannot help."""
TOKENS_MAX = 10**12
TOOLS_MAX = 200
NAME_MAX = 200


def request(row: dict[str, Any]) -> rq.ReportTurnUsage:
    """The `turn_usage` request of a stats row (`TurnStats.unreported`), each figure held
    within the wire's bounds."""

    def count(key: str) -> int:
        value = row.get(key)
        return min(max(value, 0), TOKENS_MAX) if isinstance(value, int) else 0

    def when(key: str) -> float:
        value = float(row.get(key) or 0.0)
        return value if math.isfinite(value) and value > 0 else 0.0

    cost = float(row.get("cost_usd") or 0.0)
    tools: dict[str, int] = {}
    calls = [(str(k), v) for k, v in row["tools"].items() if isinstance(v, int) and v > 0]
    for name, calls_of in sorted(calls, key=lambda item: -item[1])[:TOOLS_MAX]:
        tools[name[:NAME_MAX]] = tools.get(name[:NAME_MAX], 0) + calls_of
    return rq.ReportTurnUsage(
        cmd="turn_usage", turn_id=str(row["turn_id"]), started_at=when("started_at"),
        ended_at=when("ended_at"), model=str(row["model"])[:100],
        result_kind=str(row["result_kind"])[:40], input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_creation_input_tokens=count("cache_creation_input_tokens"),
        cache_read_input_tokens=count("cache_read_input_tokens"),
        cost_usd=min(cost, 1e6) if math.isfinite(cost) and cost > 0 else 0.0, tools=tools,
    )  # fmt: skip


class UsageReporter:
    """Sends the unreported rows of `stats` whenever asked (`flush`), one flush at a time,
    each a task of `tasks` (the harness's group): never on a turn's path, and a failure is
    logged, never raised."""

    def __init__(self, socket: Path, stats: TurnStats, tasks: anyio.abc.TaskGroup) -> None:
        self._socket = socket
        self._stats = stats
        self._tasks = tasks
        self._sending = False
        self._again = False
        """A flush was asked for while one ran: it goes round once more."""
        self._idle = anyio.Event()
        self._idle.set()

    def flush(self) -> None:
        """Send every unreported row, unless a flush is under way (it then goes round once
        more, so a row recorded meanwhile is not left behind)."""
        self._again = True
        if not self._sending:
            self._sending = True
            self._idle = anyio.Event()
            self._tasks.start_soon(self._flush)

    async def wind_down(self, seconds: float) -> bool:
        """Let a flush under way end, for up to `seconds` (the harness stopping: the turn
        it just recorded is reported now rather than at the next start); whether it ended."""
        with anyio.move_on_after(seconds):
            await self._idle.wait()
        return self._idle.is_set()

    async def _flush(self) -> None:
        try:
            while self._again:
                self._again = False
                if not await self.send_pending():
                    return  # the next flush tries again
        except Exception:
            logger.exception("reporting turn usage failed; the next turn tries again")
        finally:
            self._sending = False
            self._idle.set()

    async def send_pending(self) -> bool:
        """Send the unreported rows, oldest first, marking each as hive-core answers; False
        when hive-core could not take them (the rest wait for the next flush)."""
        while rows := await self._stats.unreported(BATCH):
            try:
                async with HiveClient(self._socket) as core:
                    for row in rows:
                        await self._send(core, row)
            except (ClientError, TimeoutError, ValueError) as exc:
                left = "it and the turns after it wait" if len(rows) > 1 else "it waits"
                logger.warning("could not report turn usage (%s): %s", why(exc), left)
                return False
        return True

    async def _send(self, core: HiveClient, row: dict[str, Any]) -> None:
        """Send one row and mark it.

        Raises:
            ClientError, TimeoutError: hive-core did not take it (the row stays unreported).
        """
        turn_id = str(row["turn_id"])
        try:
            report = request(row)
        except ValueError as exc:  # a figure the wire cannot carry, even held in bounds
            logger.warning("turn %s: usage cannot be reported: %s", turn_id, exc)
            await self._stats.mark(turn_id, REFUSED)
            return
        try:
            with anyio.fail_after(CALL_WAIT):
                await core.call(report, rs.Done)
        except RemoteError as exc:
            if exc.code not in REFUSALS:
                raise
            logger.warning("hive-core refused turn %s's usage: %s", turn_id, why(exc))
            await self._stats.mark(turn_id, REFUSED)
            return
        await self._stats.mark(turn_id, REPORTED)
