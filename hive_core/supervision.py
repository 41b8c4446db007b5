"""What systemd sees of a running daemon: `WATCHDOG=1` pings and a one-line `STATUS=`.

Both run as tasks in the daemon's task group, on its event loop: a loop that hangs
stops the pings, and systemd (`WatchdogSec=`) restarts the daemon. The status line has a
cancel scope of its own: shutdown ends it first, so `STOPPING=1` is the last word.
"""

from __future__ import annotations

import asyncio
import logging

import anyio

from hive_core.sdnotify import Notifier
from hive_core.services import Services

logger = logging.getLogger(__name__)

STATUS_KINDS = frozenset(
    {
        "approval_added",
        "approval_resolved",
        "question_added",
        "question_resolved",
        "container_state_changed",
        "container_removed",
        "transient_cleared",
        "hosts_changed",
    }
)
"""The bus events after which the summary is computed again (messages never change it)."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def summary(s: Services) -> str:
    """E.g. `3 agents running, 1 approval pending, 2 questions open`; a hive that spans
    hosts adds `; NATS up, 3 hosts, 12 agents elsewhere`."""
    running = sum(1 for r in s.registry.all() if s.backend.status(r.name).running)
    approvals = await s.approvals.count_pending()
    questions = await s.questions.count_pending()
    line = (
        f"{_count(running, 'agent')} running, {_count(approvals, 'approval')} pending, "
        f"{_count(questions, 'question')} open"
    )
    fed = s.federation
    if fed is not None:
        hosts = 1 + len(fed.view.hosts)
        line += f"; NATS {fed.link.state}, {_count(hosts, 'host')}, "
        line += f"{_count(len(fed.view.agents), 'agent')} elsewhere"
    return line


async def keep_alive(notifier: Notifier, interval: float) -> None:
    """`WATCHDOG=1` now and every `interval` seconds, until cancelled."""
    while True:
        notifier.send("WATCHDOG=1")
        await anyio.sleep(interval)


async def report_status(s: Services, notifier: Notifier, ready: asyncio.Event) -> None:
    """`STATUS=<summary>` now, again once start-up is over (`ready`: its `starting: …`
    lines wrote over it), and whenever a bus event changes it, until cancelled."""

    async def after_start() -> None:
        await ready.wait()
        await _send_if_changed(s, notifier, None)

    last: str | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(after_start)
        while True:
            sub = s.bus.subscribe(kinds=STATUS_KINDS)
            try:
                last = await _send_if_changed(s, notifier, last)
                async for _frame in sub:  # ends after a resync: subscribe again and recount
                    last = await _send_if_changed(s, notifier, last)
            finally:
                sub.close()


async def _send_if_changed(s: Services, notifier: Notifier, last: str | None) -> str | None:
    try:
        line = await summary(s)
    except Exception:
        logger.exception("could not count agents, approvals and questions for STATUS=")
        return last
    if line != last:
        notifier.send(f"STATUS={line}")
    return line
