"""Crash watch: an agent whose harness disappears without an operator asking has crashed.

Every scan (every 10 s, and at once when the backend reports an unexpected
exit) compares the running agents with the previous scan. An agent that
vanished while its desired state is `running` and with no operator transition
since the last scan crashed: its overseer (the manager; the operator for the
manager) gets one `ContainerCrash`, and the agent is restarted after a backoff:
5 s, doubling per crash to at most 300 s. Five crashes within ten minutes and
hive-core stops restarting it (desired state `stopped`) and says so.

Each scan also diffs the agents' states against the last view and publishes
`ContainerStateChanged` / `ContainerRemoved` for what changed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import anyio

from hive_core import agent_info, lifecycle, notices
from hive_core.attention import CrashState
from hive_core.clock import Clock
from hive_core.errors import HiveError
from hive_core.services import Services
from hive_share import events, helper
from hive_share.names import MANAGER_NAME, OPERATOR

logger = logging.getLogger(__name__)

INTERVAL = 10.0
BACKOFF_BASE = 5.0
BACKOFF_MAX = 300.0
CRASH_WINDOW = 600.0
MAX_CRASHES = 5
STOPPING = frozenset({"stop", "kill", "restart", "rebuild", "destroy", "deploy"})
"""Transitions that end a harness on purpose."""


@dataclass
class _Crashes:
    times: list[float] = field(default_factory=list)
    restart_at: float | None = None
    detail: str = ""
    """What the last crash was."""
    gave_up_at: float | None = None
    """When the watch gave up restarting it (it stays stopped until someone starts it)."""


def backoff(crashes_in_window: int) -> float:
    """Seconds before restarting after the n-th crash in the window (n >= 1)."""
    return float(min(BACKOFF_BASE * 2 ** (crashes_in_window - 1), BACKOFF_MAX))


class CrashWatch:
    def __init__(self, s: Services, clock: Clock) -> None:
        self._s = s
        self._clock = clock
        self._running: set[str] = set()
        self._last_scan: float | None = None
        self._crashes: dict[str, _Crashes] = {}
        self._view: dict[str, tuple[str, int | None]] = {}
        self._wake = asyncio.Event()
        self._exited: set[str] = set()
        """Agents the backend saw exit unexpectedly since the last scan."""

    def nudge(self, name: str) -> None:
        """The backend saw `name` exit unexpectedly: scan now, and count it even if no scan
        saw it running yet."""
        self._exited.add(name)
        self._wake.set()

    async def run(self, interval: float = INTERVAL) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick(self._clock.now())
            except Exception:
                logger.exception("crash watch scan failed; scanning again in %.0fs", interval)
            due = [h.restart_at for h in self._crashes.values() if h.restart_at is not None]
            pause = min([interval, *(t - self._clock.now() for t in due)])
            with anyio.move_on_after(max(pause, 0.0)):
                await self._wake.wait()

    async def tick(self, now: float) -> list[str]:
        """One scan at `now`; returns the agents found crashed (none while hive-core stops:
        it stops them itself)."""
        s = self._s
        if s.stopping:
            return []
        running = {r.name for r in s.registry.all() if s.backend.status(r.name).running}
        vanished = (self._running | self._exited) - running
        self._exited.clear()
        crashed = []
        for name in sorted(vanished):
            if await self._is_crash(name):
                crashed.append(name)
                await self._crashed(name, now)
        await self._restart_due(now)
        self._running = {r.name for r in s.registry.all() if s.backend.status(r.name).running}
        self._last_scan = now
        self._publish_changes()
        return crashed

    async def _is_crash(self, name: str) -> bool:
        record = self._s.registry.find(name)
        if record is None or record.desired != "running":
            return False  # destroyed, stopped or killed on purpose
        if self._last_scan is None:
            return True
        # A transition that takes the harness down (or one still under way) explains it.
        recent = await self._s.transients.since(name, self._last_scan)
        return not any(action in STOPPING or open_ for action, _, open_ in recent)

    async def _crashed(self, name: str, now: float) -> None:
        history = self._crashes.setdefault(name, _Crashes())
        history.times = [t for t in history.times if now - t < CRASH_WINDOW] + [now]
        code = self._s.liveness.last_exit.get(name)
        detail = f"the harness exited with code {code}" if code is not None else "it vanished"
        history.detail = detail
        if len(history.times) >= MAX_CRASHES:
            history.restart_at = None
            history.gave_up_at = now
            history.times.clear()  # an operator start later begins a fresh count
            await self._s.registry.set_desired(name, "stopped")
            logger.error("%s crashed %d times in 10 minutes; not restarting", name, MAX_CRASHES)
            delay = None
            detail += f"; {MAX_CRASHES} crashes in 10 minutes, so it stays stopped"
        else:
            delay = backoff(len(history.times))
            history.restart_at = now + delay
            history.gave_up_at = None
            logger.warning("%s crashed (%s); restarting in %.0fs", name, detail, delay)
        event = helper.ContainerCrash(agent=name, detail=detail, restart_in_seconds=delay)
        await notices.tell_overseer(self._s, name, event)
        if delay is None and name != MANAGER_NAME and self._s.registry.find(MANAGER_NAME):
            # Giving up needs a person: the manager may be the one crashing, or busy.
            await self._s.broker.notify(OPERATOR, event)

    def states(self) -> dict[str, CrashState]:
        """Agents being restarted after a crash, and those given up on while nobody has
        started them again (the attention list's `crashed` and `given_up`)."""
        out = {}
        for name, history in self._crashes.items():
            record = self._s.registry.find(name)
            if history.gave_up_at is not None:
                if record is None or record.desired == "running":
                    history.gave_up_at = None  # started again, or gone
                    continue
                out[name] = CrashState(history.gave_up_at, history.detail, gave_up=True)
            elif history.restart_at is not None and history.times and record is not None:
                out[name] = CrashState(history.times[-1], history.detail, gave_up=False)
        return out

    async def _restart_due(self, now: float) -> None:
        for name, history in self._crashes.items():
            if history.restart_at is None or history.restart_at > now:
                continue
            history.restart_at = None
            record = self._s.registry.find(name)
            if record is None or record.desired != "running":
                continue
            try:
                await lifecycle.start(self._s, name, "crash-watch")
            except HiveError as exc:
                logger.error("restarting %s failed: %s", name, exc.message)
                if name not in self._exited:  # an exit the backend reported is counted by the scan
                    await self._crashed(name, now)  # a failed restart counts: back off or give up

    def _publish_changes(self) -> None:
        s = self._s
        view = {}
        for record in s.registry.all():
            status = s.backend.status(record.name)
            view[record.name] = ("running" if status.running else "stopped", status.pid)
        for name, state in view.items():
            if self._view.get(name) != state:
                agent_info.publish_state(s, name)
        for name in self._view.keys() - view.keys():
            s.bus.publish(events.ContainerRemoved(name=name))
        self._view = view
