"""What each agent's turns cost, summed over the budget windows, and the budgets on them.

Each harness reports every ended turn (`turn_usage`, the figures of its turn-stats row); it
resends until hive-core has it, so `record` stores a turn once per agent and turn id, in one
statement. `report` sums the rows per agent over the rolling windows, 5 hours and 7 days
([now - length, now], by each turn's end), with each agent's limits and state, the hive's
total as the agent `*`, and on request the last 24 hours hour by hour.

Budget tokens are input + cache creation + output; cache reads are shown, not counted. What
follows from the sums (warnings, holds, `budget` approvals, grants, attention items) is
`budgets.py`; the arithmetic is `spend.py`. The coordination tick (`tick`) lets holds lift
as the windows roll and prunes rows past `KEEP_SECONDS` once an hour.
"""

from __future__ import annotations

import json
import logging
import sqlite3

from hive_core.budgets import Budgets
from hive_core.errors import UnknownAgent
from hive_core.services import Services
from hive_core.spend import (
    WINDOWS,
    Grant,
    Limits,
    Spend,
    assess,
    grants_in_windows,
    limits_of,
    params,
    spend_by_agent,
)
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.base import BudgetWindow
from hive_share.events import UsageChanged
from hive_share.models import AgentUsage, Approval, AttentionItem, UsageHour

logger = logging.getLogger(__name__)

HIVE_TOTAL = "*"
"""The agent name under which `report` gives the whole hive's spend."""
HOUR = 3600.0
HOURLY_SPAN = 24 * HOUR
KEEP_SECONDS = 8 * 86400.0
"""How long `turn_usage` and `budget_grants` rows are kept: past the longest window."""
PRUNE_INTERVAL = 3600.0


class Usage:
    """Records and reports what turns cost; `budgets` acts on it (the broker's gate)."""

    def __init__(self, s: Services) -> None:
        self._s = s
        self.budgets = Budgets(s)
        self._pruned_at: float | None = None
        s.broker.hold_while(self.budgets.held)

    async def record(self, agent: str, req: rq.ReportTurnUsage) -> bool:
        """Store one ended turn of `agent`; True when its turn id was new for that agent.

        A turn's end later than now counts as now (a harness cannot push its spend out of
        the windows ahead of time). A new turn is followed by an assessment of the agent's
        budgets; one that fails is logged and done again at the next tick.
        """
        now = self._s.clock.now()
        ended = min(req.ended_at, now)
        started = min(req.started_at, ended)
        values = (
            agent, req.turn_id, started, ended, req.model, req.result_kind, req.input_tokens,
            req.output_tokens, req.cache_creation_input_tokens, req.cache_read_input_tokens,
            req.cost_usd, json.dumps(req.tools, sort_keys=True), now,
        )  # fmt: skip

        def insert(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "INSERT INTO turn_usage (agent, turn_id, started_at, ended_at, model, "
                "result_kind, input_tokens, output_tokens, cache_creation_input_tokens, "
                "cache_read_input_tokens, cost_usd, tools, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (agent, turn_id) DO NOTHING RETURNING id",
                values,
            ).fetchone()
            return row is not None

        fresh = await self._s.db.write(insert, one_statement=True)
        if fresh:
            try:
                await self.budgets.check(agent)
            except Exception:  # stored: the next tick assesses it again
                logger.exception("could not assess %s's budget after turn %s", agent, req.turn_id)
            await self._publish(agent)
        return fresh

    async def _publish(self, agent: str) -> None:
        """`usage_changed` for the dashboard: `agent`'s windows and hours, and the hive's."""
        try:
            mine = await self.report(agent, None, hourly=True)
            hive = await self.report(None, None, hourly=False)
        except Exception:  # the next turn publishes again; the snapshot has it meanwhile
            logger.exception("could not publish %s's usage", agent)
            return
        totals = [u for u in hive.usage if u.agent == HIVE_TOTAL]
        self._s.bus.publish(
            UsageChanged(agent=agent, usage=[*mine.usage, *totals], hourly=mine.hourly)
        )

    async def report(
        self, agent: str | None, window: BudgetWindow | None, hourly: bool
    ) -> rs.UsageReport:
        """Spend per agent and window with limits and state (registered agents first, then
        any other with turns in the last 7 days, then the hive's total `*` when no agent is
        named), and with `hourly` the last 24 hours per agent and hour.

        Raises:
            UnknownAgent: `agent` is neither registered nor has turns in the last 7 days.
        """
        now = self._s.clock.now()
        windows: list[BudgetWindow] = [window] if window else list(WINDOWS)

        def read(
            conn: sqlite3.Connection,
        ) -> tuple[
            dict[BudgetWindow, dict[str, Spend]],
            dict[tuple[str, BudgetWindow], Grant],
            list[UsageHour],
        ]:
            spends = {w: spend_by_agent(conn, now - WINDOWS[w], now, agent) for w in windows}
            grants = grants_in_windows(conn, now, agent)
            return spends, grants, _hours(conn, now, agent) if hourly else []

        spends, grants, hours = await self._s.db.read(read)
        names = [r.name for r in self._s.registry.all() if agent in (None, r.name)]
        spent = {name for by_agent in spends.values() for name in by_agent}
        others = sorted(spent - set(names))
        if agent is not None and not names and not others:
            raise UnknownAgent(f"no agent named {agent!r}; `hive-core list` shows who exists")
        warn = self._s.settings.budget_warn_percent
        rows: list[AgentUsage] = []
        for name in names + others:
            base = limits_of(self._s, name)
            for w in windows:
                got = grants.get((name, w), Grant())
                rows.append(assess(w, spends[w].get(name, Spend()), base, got, warn).usage(name))
        if agent is None:
            for w in windows:
                total = sum(spends[w].values(), Spend())
                rows.append(assess(w, total, Limits(), Grant(), warn).usage(HIVE_TOTAL))
        return rs.UsageReport(now=now, usage=rows, hourly=hours)

    async def items(self) -> list[AttentionItem]:
        """The attention list's `budget_warning` and `over_budget` items."""
        return await self.budgets.items()

    async def grant(self, approval: Approval) -> str:
        """Carry out an approved `budget` approval (see `Budgets.grant`)."""
        return await self.budgets.grant(approval)

    async def tick(self) -> None:
        """The coordination tick: windows that rolled lift their holds; once an hour, rows
        older than `KEEP_SECONDS` are pruned."""
        await self.budgets.tick()
        now = self._s.clock.now()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_INTERVAL:
            await self.prune(now)
            self._pruned_at = now

    async def prune(self, now: float) -> int:
        """Delete usage rows and grants older than `KEEP_SECONDS`; returns the rows gone."""
        cutoff = now - KEEP_SECONDS

        def delete(conn: sqlite3.Connection) -> int:
            turns = conn.execute("DELETE FROM turn_usage WHERE ended_at < ?", (cutoff,))
            grants = conn.execute("DELETE FROM budget_grants WHERE granted_at < ?", (cutoff,))
            return int(turns.rowcount) + int(grants.rowcount)

        gone = await self._s.db.write(delete)
        if gone:
            logger.info("pruned %d usage rows older than 8 days", gone)
        return gone


def _hours(conn: sqlite3.Connection, now: float, agent: str | None) -> list[UsageHour]:
    """Each agent's spend per hour (by each turn's end) over the last 24 hours."""
    where, args = "ended_at >= ? AND ended_at <= ?", params(now - HOURLY_SPAN, now)
    if agent is not None:
        where, args = f"agent = ? AND {where}", params(agent, *args)
    rows = conn.execute(
        "SELECT agent, CAST(ended_at / 3600 AS INTEGER) * 3600 AS hour, "
        "sum(input_tokens + cache_creation_input_tokens + output_tokens), sum(cost_usd) "
        f"FROM turn_usage WHERE {where} GROUP BY agent, hour ORDER BY hour, agent",
        args,
    ).fetchall()
    return [
        UsageHour(agent=r[0], hour=float(r[1]), tokens=int(r[2]), cost_usd=float(r[3]))
        for r in rows
    ]
