"""The daemon's periodic loops, each a task of its one task group: the message vacuum
(at start, then hourly), the sweep of the agents' own history files, the WAL checkpoint,
and every COORDINATION_TICK the reminder scheduler, the question TTL watchdog and the
budget windows (holds lift as they roll; usage rows pruned hourly).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from hive_core import events_vacuum
from hive_core.clock import Clock
from hive_core.services import Services

logger = logging.getLogger(__name__)

VACUUM_INTERVAL = 3600.0
CHECKPOINT_INTERVAL = 2.0
COORDINATION_TICK = 5.0
"""How often due reminders are delivered and expired questions resolved."""


async def periodic(interval: float, tick: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `tick` now and then every `interval` seconds, until cancelled; a failing tick is
    logged, not fatal."""
    while True:
        try:
            await tick()
        except Exception:
            logger.exception("%s failed; will retry in %.0fs", what, interval)
        await anyio.sleep(interval)


def start_loops(tg: TaskGroup, s: Services, clock: Clock) -> None:
    """Start every periodic loop in `tg`; they end when its cancel scope is cancelled."""
    loops: list[tuple[float, Callable[[], Awaitable[object]], str]] = [
        (VACUUM_INTERVAL, lambda: s.broker.vacuum(clock.now()), "message vacuum"),
        (CHECKPOINT_INTERVAL, s.db.checkpoint, "checkpoint"),
        (VACUUM_INTERVAL, s.links.prune, "used action links"),
        (COORDINATION_TICK, lambda: s.reminders.tick(clock.now()), "reminder scheduler"),
        (COORDINATION_TICK, lambda: s.questions.expire_due(clock.now()), "question TTL watchdog"),
        (COORDINATION_TICK, s.usage.tick, "budget windows"),
    ]
    for interval, tick, what in loops:
        tg.start_soon(periodic, interval, tick, what, name=what)
    tg.start_soon(events_vacuum.run, s, name="history sweep")
