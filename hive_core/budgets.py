"""Budgets: each agent's spend over the rolling windows against its limits, and what follows.

Limits come from the deployed `agent.toml`'s `[budget]` (`s.configs`, the config the operator
approved), else hive-core's `HIVE_BUDGET_*` settings; never from what a harness says. A
`budget` approval's grant raises a limit for one window until the window rolls past it.

Per agent and window the state is `ok`, `warning` (at or past the warn percentage of a limit)
or `over` (at or past a limit). After each recorded turn, each grant and each tick (the
coordination tick, 5 s) the agent's windows are assessed again:

- crossing into `warning` tells the overseer once (`budget_reached`, not hard);
- reaching `over` holds the agent: the broker asks `held` before it leases, so the agent's
  `recv` delivers nothing and its messages stay queued. One `budget` approval is queued per
  crossing (requester `hive`) and the overseer is told (`budget_reached`, hard). A turn under
  way is never cut short;
- approving grants `HIVE_BUDGET_GRANT_PERCENT` of the limit beyond what was spent and lifts
  the hold; denying leaves the agent held until the window rolls;
- when every window is back under its limits the hold lifts by itself, the parked `recv` is
  woken, and a budget approval still pending is ended `denied` as no longer needed.

What is held, asked and warned lives in memory; at the first use after a start it is
assessed again from the tables, quietly (nobody is told twice; a crossing with no approval
on record gets one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from dataclasses import dataclass, field

from hive_core import agent_info, notices
from hive_core.errors import Conflict, NotFound
from hive_core.services import Services
from hive_core.spend import (
    RANK,
    WINDOWS,
    Assessment,
    Grant,
    Limits,
    Spend,
    State,
    amount,
    assess,
    grant_for,
    insert_grants,
    limits_of,
    offer,
    windows_of,
)
from hive_share import helper
from hive_share.base import BudgetWindow
from hive_share.helper import HIVE_SENDER
from hive_share.models import Approval, AttentionItem

logger = logging.getLogger(__name__)

NO_LONGER_NEEDED = "no longer needed: {agent} is back under its budget (the window rolled)"


@dataclass
class _Window:
    assessment: Assessment
    since: float
    """When this state began (as hive-core saw it; a restart starts it again)."""


@dataclass
class _Agent:
    windows: dict[BudgetWindow, _Window] = field(default_factory=dict)
    """The windows not `ok`."""
    asked: int | None = None
    """The budget approval of the current hold (pending, denied or being carried out)."""
    limits: Limits | None = None
    """The limits of the last assessment: a change is assessed at the next tick."""
    granted_until: float = 0.0
    """When the last grant leaves its window: until then a tick assesses the agent."""
    dirty: bool = False
    """An assessment failed midway: the next tick does it again."""


class Budgets:
    """The states, holds and approvals of every agent's budgets; see the module doc."""

    def __init__(self, s: Services) -> None:
        self._s = s
        self._agents: dict[str, _Agent] = {}
        self._held: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._loaded = False
        self._loading = asyncio.Lock()

    # -- the broker's gate ------------------------------------------------------------------

    async def held(self, agent: str) -> bool:
        """Whether `agent` is held: its `recv` leases nothing until this turns False."""
        if not self._loaded:
            await self.ensure_loaded()
        return agent in self._held

    # -- assessing ----------------------------------------------------------------------------

    async def ensure_loaded(self) -> None:
        """The first use after a start: every agent assessed from the tables, quietly."""
        if not self._loaded:
            await self._load()

    async def _load(self) -> None:
        async with self._loading:
            if self._loaded:
                return
            now = self._s.clock.now()

            def granted(conn: sqlite3.Connection) -> list[tuple[str, float]]:
                rows = conn.execute(
                    "SELECT agent, max(granted_at + CASE budget_window WHEN '5h' THEN ? "
                    "ELSE ? END) FROM budget_grants WHERE granted_at >= ? GROUP BY agent",
                    (WINDOWS["5h"], WINDOWS["7d"], now - WINDOWS["7d"]),
                ).fetchall()
                return [(r[0], float(r[1])) for r in rows]

            for name, until in await self._s.db.read(granted):
                self._agent(name).granted_until = until
            for record in self._s.registry.all():
                await self._assess_logged(record.name, quiet=True)
            self._loaded = True

    async def check(self, agent: str) -> None:
        """Assess `agent`'s windows again (after a recorded turn) and act on what changed."""
        await self.ensure_loaded()
        async with self._lock(agent):
            await self._assess(agent, quiet=False)

    async def tick(self) -> None:
        """Assess every agent whose state can change with time alone: not `ok`, a grant
        still in its window, new limits, gone from the registry, or a failed assessment."""
        await self.ensure_loaded()
        now = self._s.clock.now()
        due = set(self._held)
        for name, a in self._agents.items():
            if a.windows or a.granted_until > now or a.dirty:
                due.add(name)
        for record in self._s.registry.all():
            known = self._agents.get(record.name)
            if known is None or known.limits != limits_of(self._s, record.name):
                due.add(record.name)
        due |= set(self._agents) - {r.name for r in self._s.registry.all()}
        for name in sorted(due):
            await self._assess_logged(name, quiet=False)

    async def _assess_logged(self, agent: str, quiet: bool) -> None:
        """Assess `agent` under its lock; a failure is logged, and the next tick retries."""
        async with self._lock(agent):
            try:
                await self._assess(agent, quiet)
            except Exception:
                logger.exception("could not assess %s's budget; the next tick retries", agent)

    def _lock(self, agent: str) -> asyncio.Lock:
        return self._locks.setdefault(agent, asyncio.Lock())

    def _agent(self, name: str) -> _Agent:
        return self._agents.setdefault(name, _Agent())

    async def _assess(self, agent: str, quiet: bool) -> None:
        """Under `agent`'s lock: its windows against its limits; hold, ask, tell."""
        me = self._agent(agent)
        me.dirty = True
        if self._s.registry.find(agent) is None:  # destroyed: nothing to hold any more
            await self._release(agent, me, f"no longer needed: {agent} was destroyed")
            self._agents.pop(agent, None)
            return
        now, base = self._s.clock.now(), limits_of(self._s, agent)
        found = await self._s.db.read(lambda conn: windows_of(conn, agent, now))
        rising, changed = self._update(me, found, base, now)
        over = [w.assessment for w in me.windows.values() if w.assessment.state == "over"]
        tell = [] if quiet else rising
        if over:
            self._held.add(agent)
            if me.asked is None and await self._ask(agent, me, over, base, quiet) and quiet:
                tell = over  # after a restart: a crossing with no approval on record
        elif agent in self._held or me.asked is not None:
            await self._release(agent, me, NO_LONGER_NEEDED.format(agent=agent))
        for a in tell:
            await self._tell(agent, a)
        if changed:
            agent_info.publish_state(self._s, agent)
        me.dirty = False

    def _update(
        self,
        me: _Agent,
        found: dict[BudgetWindow, tuple[Spend, Grant]],
        base: Limits,
        now: float,
    ) -> tuple[list[Assessment], bool]:
        """Keep each window's new state; the windows that rose, and whether any changed."""
        warn = self._s.settings.budget_warn_percent
        rising, changed = [], False
        for window, (spend, grant) in found.items():
            a = assess(window, spend, base, grant, warn)
            old = me.windows.get(window)
            before: State = old.assessment.state if old is not None else "ok"
            changed |= before != a.state
            if a.state == "ok":
                me.windows.pop(window, None)
            else:
                since = old.since if old is not None and before == a.state else now
                me.windows[window] = _Window(a, since)
            if RANK[a.state] > RANK[before]:
                rising.append(a)
        me.limits = base
        return rising, changed

    async def _tell(self, agent: str, a: Assessment) -> None:
        hard = a.state == "over"
        logger.warning("%s spent %s of %s in %s%s", agent, amount(a.unit, a.used),
                       amount(a.unit, a.limit), a.window, ": held" if hard else "")  # fmt: skip
        event = helper.BudgetReached(
            agent=agent, window=a.window, used=a.used, limit=a.limit, unit=a.unit, hard=hard
        )
        await notices.tell_overseer(self._s, agent, event)

    async def _ask(
        self, agent: str, me: _Agent, over: list[Assessment], base: Limits, quiet: bool
    ) -> bool:
        """The hold's budget approval: one already on record for this crossing (after a
        restart: an open one, or one denied within the window), else a new one. True when
        a new one was queued."""
        if quiet and (found := await self._on_record(agent, over)) is not None:
            me.asked = found
            return False
        percent = self._s.settings.budget_grant_percent
        reached = " and ".join(
            f"{amount(a.unit, a.used)} in {a.window} (limit {amount(a.unit, a.limit)})"
            for a in over
        )
        offered = " and ".join(offer(a, base, percent) for a in over)
        why = f"{agent} reached {reached}; approve to allow {offered} until the window rolls"
        try:
            approval = await self._s.approvals.add("budget", agent, HIVE_SENDER, reason=why)
        except Conflict:
            pending = [a for a in await self._s.approvals.pending()
                       if a.kind == "budget" and a.agent == agent]  # fmt: skip
            if pending and pending[0].status == "pending":
                me.asked = pending[0].id
            return False  # one being carried out: the next assessment asks again if need be
        me.asked = approval.id
        logger.warning("%s is held: %s (approval %d)", agent, why, approval.id)
        return True

    async def _on_record(self, agent: str, over: list[Assessment]) -> int | None:
        """After a restart: the latest budget approval of `agent` when it belongs to this
        crossing (open, or denied within the longest window over)."""
        since = self._s.clock.now() - max(WINDOWS[a.window] for a in over)

        def latest(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT id, status, created_at FROM approvals WHERE kind = 'budget' "
                "AND agent = ? ORDER BY id DESC LIMIT 1",
                (agent,),
            ).fetchone()
            return row

        row = await self._s.db.read(latest)
        if row is None:
            return None
        if row["status"] in ("pending", "in_progress"):
            return int(row["id"])
        if row["status"] == "denied" and row["created_at"] >= since:
            return int(row["id"])
        return None

    async def _release(self, agent: str, me: _Agent, why: str) -> None:
        """Lift the hold: wake the agent's parked `recv`; a budget approval still pending
        is ended `denied` with `why` (no longer needed)."""
        if agent in self._held:
            self._held.discard(agent)
            logger.info("%s is no longer held by its budget", agent)
            self._s.broker.wake(agent)
        asked, me.asked = me.asked, None
        if asked is None:
            return
        try:
            approval = await self._s.approvals.resolve(asked, "denied", why)
        except (Conflict, NotFound):
            return  # decided meanwhile (denied, or being approved): that ending stands
        await notices.tell_requester(self._s, approval)

    # -- approving ----------------------------------------------------------------------------

    async def grant(self, approval: Approval) -> str:
        """Carry out a claimed budget approval: raise each limit its agent reached by what
        was spent past it and the grant percentage, until the window rolls. Recorded once
        per approval and window, so an approval reopened after a crash and approved again
        grants nothing more."""
        agent = approval.agent
        await self.ensure_loaded()
        async with self._lock(agent):
            now, base = self._s.clock.now(), limits_of(self._s, agent)
            found = await self._s.db.read(lambda conn: windows_of(conn, agent, now))
            extras = self._extras(found, base)
            rows: list[tuple[object, ...]] = [
                (agent, w, g.tokens, g.usd, now, approval.id) for w, g in extras.items()
            ]
            me = self._agent(agent)
            if rows:
                await self._s.db.write(lambda conn: insert_grants(conn, rows))
                me.granted_until = max(me.granted_until, now + max(WINDOWS[w] for w in extras))
            if me.asked == approval.id:
                me.asked = None  # this crossing's approval: carried out, not withdrawn
            await self._assess(agent, quiet=False)
        said = [f"{amount('tokens', g.tokens)} in {w}" for w, g in extras.items() if g.tokens]
        said += [f"{amount('usd', g.usd)} in {w}" for w, g in extras.items() if g.usd]
        if not said:
            return f"{agent} is under its budget again; nothing to grant"
        return f"raised {agent}'s budget by {' and '.join(said)} until the window rolls"

    def _extras(
        self, found: dict[BudgetWindow, tuple[Spend, Grant]], base: Limits
    ) -> dict[BudgetWindow, Grant]:
        """What approving now grants in each window that is over."""
        warn, percent = self._s.settings.budget_warn_percent, self._s.settings.budget_grant_percent
        extras = {}
        for window, (spend, had) in found.items():
            a = assess(window, spend, base, had, warn)
            if a.state == "over" and (more := grant_for(a, base, percent)) != Grant():
                extras[window] = more
        return extras

    # -- the attention list -------------------------------------------------------------------

    async def items(self) -> list[AttentionItem]:
        """`budget_warning` and `over_budget` items for the agents in those states."""
        await self.ensure_loaded()
        pending: set[int] | None = None
        items = []
        for name, me in sorted(self._agents.items()):
            if self._s.registry.find(name) is None:
                continue
            for window, w in sorted(me.windows.items()):
                if w.assessment.state == "warning":
                    items.append(_warning_item(name, window, w))
                    continue
                if pending is None:
                    pending = {p.id for p in await self._s.approvals.pending()
                               if p.status == "pending"}  # fmt: skip
                ref = me.asked if me.asked in pending else None
                items.append(_over_item(name, window, w, ref))
        return items


def _spent(a: Assessment) -> str:
    return f"{amount(a.unit, a.used)} of {amount(a.unit, a.limit)}"


def _warning_item(name: str, window: BudgetWindow, w: _Window) -> AttentionItem:
    a = w.assessment
    percent = math.floor(a.used * 100 / a.limit) if a.limit else 100
    return AttentionItem(
        key=f"budget_warning:{name}:{window}",
        kind="budget_warning",
        agent=name,
        summary=f"{name} spent {_spent(a)} in {window} ({percent} %)",
        since=w.since,
        severity="warn",
        action=f"hive-core usage {name}",
    )


def _over_item(name: str, window: BudgetWindow, w: _Window, ref: int | None) -> AttentionItem:
    """`ref`: the budget approval waiting for the operator; None once it was denied."""
    action = (
        f"hive-core show {ref}; hive-core approve {ref}"
        if ref is not None
        else f"hive-core usage {name} (held until the {window} window rolls)"
    )
    return AttentionItem(
        key=f"over_budget:{name}:{window}",
        kind="over_budget",
        agent=name,
        summary=f"{name} reached its {window} budget ({_spent(w.assessment)}): its turns wait",
        since=w.since,
        severity="urgent",
        action=action,
        ref=ref,
    )
