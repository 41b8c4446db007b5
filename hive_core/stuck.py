"""Stuck signals: turns that make no progress, repeat themselves or burn tokens (seen by each
harness), agents that bounce messages between them, and agents that leave messages queued.

No model judges this. A harness reports what it sees in its running turn (`stuck`); hive-core
sees the traffic between agents on its bus and the queues in its database. Each signal raises
one attention item (told once to the agent's overseer as a `stuck` helper event) and leaves
when its cause does:

- `no_progress`, `repetition`, `burn`: reported by the harness; they end with the turn (the
  harness reports `idle`), when the harness says so (`active: false`, progress again), or
  when the harness is gone.
- `ping_pong`: two agents sent each other more than `ping_pong_messages` within the window,
  with no operator message to or from either and no tool but messaging in their turns; it
  ends when the pair's count in the window falls back, or when either stops running.
- `silent`: a running, idle agent has had messages queued for `silent_minutes` and started
  no turn since (one that needs a login or is held by its budget has an item of its own);
  it ends when it starts a turn or its queue empties.

Thresholds are hive-core's settings, overridden per agent by the deployed agent.toml's
`[stuck]` table (`s.configs`); the harness gets its own with `watch_limits`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from dataclasses import dataclass
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from hive_core import agent_info, notices
from hive_core.housekeeping import COORDINATION_TICK, periodic
from hive_core.liveness import harness_call
from hive_core.services import Services
from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.base import AttentionKind
from hive_share.events import Sent
from hive_share.helper import HIVE_SENDER
from hive_share.live import TurnState
from hive_share.models import AttentionItem
from hive_share.names import OPERATOR

logger = logging.getLogger(__name__)

TURN_SIGNALS: dict[str, AttentionKind] = {
    "no_progress": "stuck_no_progress",
    "repetition": "stuck_repetition",
    "burn": "stuck_burn",
}
MESSAGING_TOOLS = "mcp__hyperhive__"
"""Tools whose names start with this are the hive's own (send, recv, ask, …): a turn that
called only these did nothing but talk."""
HARNESS_WAIT = 5.0
"""Seconds a harness gets to take note of hive-core's signals for its agent."""
ACTION = "hive-core cancel {0}; or hive-core new-session {0}; or hive-core stop {0}"


@dataclass(frozen=True)
class Signal:
    kind: AttentionKind
    agent: str
    since: float
    detail: str
    peer: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.agent}" + (f":{self.peer}" if self.peer else "")


class StuckWatch:
    """Keeps the active stuck signals; `run` follows the bus and ticks."""

    def __init__(self, s: Services) -> None:
        self._s = s
        self._turn: dict[str, dict[str, Signal]] = {}
        """Per agent, the signals its harness reported in the running turn."""
        self._told: set[tuple[str, str, str]] = set()
        """(agent, signal, turn id) already raised: a report sent twice is one warning."""
        self._state: dict[str, TurnState] = {}
        self._turn_started: dict[str, float] = {}
        """When each agent last started a turn."""
        self._pairs: dict[tuple[str, str], deque[float]] = {}
        """Per pair of agents (sorted), when each message between them was sent."""
        self._operator_at: dict[str, float] = {}
        """When the operator last sent to or heard from each agent."""
        self._busy_at: dict[str, float] = {}
        """When each agent last ended a turn that called a tool other than messaging."""
        self._tg: TaskGroup | None = None
        """The group `run` keeps: the notes to the harnesses are its tasks."""
        self._pong: dict[tuple[str, str], Signal] = {}
        self._silent: dict[str, Signal] = {}

    # -- thresholds -------------------------------------------------------------------------

    def limits(self, agent: str) -> rs.WatchLimits:
        """The thresholds `agent`'s harness applies to its turns."""
        st, own = self._s.settings, self._s.configs.get(agent).stuck
        minutes = own.no_progress_minutes or st.stuck_no_progress_minutes
        return rs.WatchLimits(
            no_progress_seconds=minutes * 60,
            repeat=own.repeat or st.stuck_repeat,
            burn_tokens=own.burn_tokens or st.stuck_burn_tokens,
        )

    def _silent_after(self, agent: str) -> float:
        own = self._s.configs.get(agent).stuck.silent_minutes
        return (own or self._s.settings.silent_minutes) * 60

    def _pong_limit(self, a: str, b: str) -> int:
        default = self._s.settings.ping_pong_messages
        mine, theirs = (self._s.configs.get(n).stuck.ping_pong_messages for n in (a, b))
        return min(mine or default, theirs or default)

    # -- what the harness reports -------------------------------------------------------------

    async def report(self, agent: str, req: rq.ReportStuck) -> None:
        """A harness's `stuck` report: raise the signal once per turn, or drop it."""
        signals = self._turn.setdefault(agent, {})
        if not req.active:
            if signals.pop(req.signal, None) is not None:
                agent_info.publish_state(self._s, agent)
            return
        told = (agent, req.signal, req.turn_id)
        if told in self._told or self._state.get(agent, "idle") == "idle":
            return  # told already, or the turn it names has ended
        self._told.add(told)
        kind = TURN_SIGNALS[req.signal]
        signals[req.signal] = Signal(kind, agent, self._s.clock.now(), req.detail)
        logger.warning("%s looks stuck (%s): %s", agent, req.signal, req.detail)
        agent_info.publish_state(self._s, agent)
        event = helper.Stuck(agent=agent, signal=req.signal, detail=req.detail)
        await notices.tell_overseer(self._s, agent, event)

    def turn_state(self, agent: str, state: TurnState) -> None:
        """A harness's turn state: a turn that ends takes its signals with it; one that
        starts ends `silent`."""
        before = self._state.get(agent, "idle")
        self._state[agent] = state
        if state == "idle" and before != "idle":
            self._end_turn(agent)
        elif state != "idle" and before == "idle":
            self._turn_started[agent] = self._s.clock.now()
            if self._silent.pop(agent, None) is not None:
                self._changed(agent)

    def _end_turn(self, agent: str) -> None:
        self._told = {t for t in self._told if t[0] != agent}
        if self._turn.pop(agent, None):
            agent_info.publish_state(self._s, agent)

    def turn_used(self, agent: str, tools: dict[str, int], ended_at: float) -> None:
        """A turn's tools (from its `turn_usage`): one that did more than talk is activity
        that rules out ping-pong."""
        if any(not name.startswith(MESSAGING_TOOLS) for name, n in tools.items() if n):
            self._busy_at[agent] = max(ended_at, self._busy_at.get(agent, 0.0))

    # -- the attention list ------------------------------------------------------------------

    def signals_of(self, agent: str) -> list[AttentionKind]:
        """The kinds of the signals active for `agent` (its row's badges)."""
        return [s.kind for s in self._active() if s.agent == agent or s.peer == agent]

    def items(self) -> list[AttentionItem]:
        return [_item(sig) for sig in self._active()]

    def _active(self) -> list[Signal]:
        running = self._s.liveness.turn_state
        found = [sig for agent, sigs in self._turn.items() if agent in running
                 for sig in sigs.values()]  # fmt: skip
        found += [sig for sig in self._pong.values() if sig.agent in running]
        found += [sig for sig in self._silent.values() if sig.agent in running]
        return found

    # -- what hive-core sees itself ----------------------------------------------------------

    async def run(self) -> None:
        """Follow the bus (sends between agents, the operator's messages) and tick for the
        queues and the pairs' windows, until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._follow, name="stuck: bus")
            tg.start_soon(periodic, COORDINATION_TICK, self.tick, "stuck watch", name="stuck")

    async def _follow(self) -> None:
        while True:
            sub = self._s.bus.subscribe(kinds=("sent",))
            try:
                async for frame in sub:  # ends after a resync: subscribe again
                    if isinstance(frame.event, Sent):
                        await self.on_sent(frame.event)
            finally:
                sub.close()

    async def on_sent(self, event: Sent) -> None:
        """Count a message between two agents; note the operator's."""
        m = event.message
        if OPERATOR in (m.sender, m.recipient):
            other = m.recipient if m.sender == OPERATOR else m.sender
            self._operator_at[other] = m.sent_at
            # Only a ping-pong signal of `other`'s can end with this; the other pairs move
            # with time, which the tick recounts.
            for pair in [p for p in self._pong if other in p]:
                await self._check_pair(pair)
            return
        if HIVE_SENDER in (m.sender, m.recipient):
            return
        pair = (min(m.sender, m.recipient), max(m.sender, m.recipient))
        self._pairs.setdefault(pair, deque()).append(m.sent_at)
        await self._check_pair(pair)

    async def tick(self) -> None:
        """Recount the pairs (their windows move on) and look for silent agents."""
        await self._recount()
        await self._check_silent()

    async def _recount(self) -> None:
        for pair in list(self._pairs):
            await self._check_pair(pair)

    async def _check_pair(self, pair: tuple[str, str]) -> None:
        now = self._s.clock.now()
        window = self._s.settings.ping_pong_window_minutes * 60
        times = self._pairs[pair]
        while times and times[0] < now - window:
            times.popleft()
        a, b = pair
        quiet_since = now - window
        bouncing = (
            all(self._operator_at.get(n, 0.0) < quiet_since for n in pair)
            and all(self._busy_at.get(n, 0.0) < quiet_since for n in pair)
            and len(times) > self._pong_limit(a, b)
        )
        if not times:
            del self._pairs[pair]
        had = self._pong.get(pair)
        if bouncing and had is None:
            detail = f"{len(times)} messages between {a} and {b} in {window / 60:.0f} min"
            self._pong[pair] = sig = Signal("ping_pong", a, times[0], detail, peer=b)
            logger.warning("%s and %s look stuck: %s", a, b, detail)
            for name in pair:
                self._changed(name)
            event = helper.Stuck(agent=a, signal="ping_pong", detail=sig.detail, peer=b)
            await notices.tell_overseer(self._s, a, event)
        elif not bouncing and had is not None:
            del self._pong[pair]
            for name in pair:
                self._changed(name)

    async def _check_silent(self) -> None:
        running = [n for n, state in self._s.liveness.turn_state.items() if state == "idle"]
        oldest = await self._s.db.read(lambda conn: _oldest_queued(conn, running))
        now = self._s.clock.now()
        for name in set(self._silent) - set(oldest):
            del self._silent[name]  # its queue emptied, or it is no longer idle and running
            self._changed(name)
        for name, sent_at in oldest.items():
            waiting = now - sent_at
            started = self._turn_started.get(name, 0.0)
            if name in self._silent or waiting < self._silent_after(name) or started > sent_at:
                continue
            if self._s.liveness.login.get(name) in ("needs_login", "claude_missing"):
                continue  # the login item says why; it is not stuck
            if await self._s.usage.budgets.held(name):
                continue  # held by its budget: the over_budget item says why
            detail = f"messages queued for {waiting / 60:.0f} min and no turn started"
            self._silent[name] = Signal("silent", name, sent_at, detail)
            logger.warning("%s looks stuck: %s", name, detail)
            self._changed(name)
            await notices.tell_overseer(
                self._s, name, helper.Stuck(agent=name, signal="silent", detail=detail)
            )

    def _changed(self, agent: str) -> None:
        """hive-core's own signals for `agent` changed: its row, and its harness (for the
        agent's page), hear of it."""
        agent_info.publish_state(self._s, agent)
        if self._tg is not None:
            self._tg.start_soon(self._tell_harness, agent)

    def hive_signals(self, agent: str) -> list[Literal["ping_pong", "silent"]]:
        """The signals hive-core itself sees for `agent`, as its harness is told them."""
        found: list[Literal["ping_pong", "silent"]] = []
        if any(agent in pair for pair in self._pong):
            found.append("ping_pong")
        if agent in self._silent:
            found.append("silent")
        return found

    async def _tell_harness(self, agent: str) -> None:
        """Send `agent`'s harness hive-core's signals for it, whole (the latest state at the
        time of sending); a harness that is not there or does not answer misses it."""
        request = rq.HiveSignals(cmd="hive_signals", signals=self.hive_signals(agent))
        try:
            await harness_call(self._s.settings.harness_socket(agent), request, HARNESS_WAIT)
        except (OSError, TimeoutError, ValueError) as exc:
            logger.debug("could not tell %s's harness its signals: %s", agent, exc)

    def forget(self, agent: str) -> None:
        """`agent` is gone (destroyed): drop what is kept about it."""
        self._turn.pop(agent, None)
        self._state.pop(agent, None)
        self._turn_started.pop(agent, None)
        self._silent.pop(agent, None)
        self._busy_at.pop(agent, None)
        self._operator_at.pop(agent, None)
        self._told = {t for t in self._told if t[0] != agent}
        for pair in [p for p in {*self._pairs, *self._pong} if agent in p]:
            self._pairs.pop(pair, None)
            self._pong.pop(pair, None)


def _oldest_queued(conn: sqlite3.Connection, names: list[str]) -> dict[str, float]:
    """For each of `names` with undelivered messages, when the oldest was sent."""
    found: dict[str, float] = {}
    for name in names:
        row = conn.execute(
            "SELECT sent_at FROM messages WHERE recipient = ? AND delivered_at IS NULL "
            "ORDER BY id LIMIT 1",
            (name,),
        ).fetchone()
        if row is not None:
            found[name] = float(row[0])
    return found


def _item(sig: Signal) -> AttentionItem:
    return AttentionItem(
        key=sig.key,
        kind=sig.kind,
        agent=sig.agent,
        summary=_summary(sig),
        since=sig.since,
        severity="warn",
        action=ACTION.format(sig.agent),
    )


def _summary(sig: Signal) -> str:
    what = {
        "stuck_no_progress": "makes no progress",
        "stuck_repetition": "repeats itself",
        "stuck_burn": "burns tokens",
        "ping_pong": f"and {sig.peer} bounce messages",
        "silent": "leaves its messages queued",
    }[sig.kind]
    return f"{sig.agent} {what}: {sig.detail}"[:200]
