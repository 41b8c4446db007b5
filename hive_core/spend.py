"""What turns cost, measured against budgets: the sums of `turn_usage` over the rolling
windows, each agent's limits (the deployed agent.toml's `[budget]`, else the settings) raised
by the grants still in their window, and the state that follows (ok, warning, over).

Pure reads and arithmetic: `usage.py` reports them, `budgets.py` acts on them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hive_core.services import Services
from hive_share.base import BudgetWindow
from hive_share.models import AgentUsage

WINDOWS: dict[BudgetWindow, float] = {"5h": 5 * 3600.0, "7d": 7 * 86400.0}
"""Each rolling window's length in seconds: spend counts over [now - length, now]."""
State = Literal["ok", "warning", "over"]
Unit = Literal["tokens", "usd"]
RANK: dict[State, int] = {"ok": 0, "warning": 1, "over": 2}

_SUMS = (
    "count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
    "coalesce(sum(cache_creation_input_tokens), 0), coalesce(sum(cache_read_input_tokens), 0), "
    "coalesce(sum(cost_usd), 0.0)"
)


@dataclass(frozen=True)
class Spend:
    """What turns cost over some span."""

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        """What budgets count: input + cache creation + output (cache reads are not)."""
        return self.input_tokens + self.cache_creation_input_tokens + self.output_tokens

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.turns + other.turns,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cost_usd + other.cost_usd,
        )


def _spend(row: Sequence[Any]) -> Spend:
    """A row of `_SUMS` (count, the four token sums, the cost)."""
    return Spend(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), float(row[5]))


def params(*values: object) -> tuple[object, ...]:
    """Query parameters of mixed types."""
    return values


def spend_of(conn: sqlite3.Connection, agent: str, since: float, until: float) -> Spend:
    """`agent`'s spend over [since, until] (the `turn_usage_window` index)."""
    row = conn.execute(
        f"SELECT {_SUMS} FROM turn_usage WHERE agent = ? AND ended_at >= ? AND ended_at <= ?",
        (agent, since, until),
    ).fetchone()
    return _spend(row)


def spend_by_agent(
    conn: sqlite3.Connection, since: float, until: float, agent: str | None = None
) -> dict[str, Spend]:
    """Every agent's spend over [since, until] (or only `agent`'s), by agent."""
    where, args = "ended_at >= ? AND ended_at <= ?", params(since, until)
    if agent is not None:
        where, args = f"agent = ? AND {where}", params(agent, *args)
    rows = conn.execute(
        f"SELECT agent, {_SUMS} FROM turn_usage WHERE {where} GROUP BY agent", args
    ).fetchall()
    return {r[0]: _spend(tuple(r)[1:]) for r in rows}


@dataclass(frozen=True)
class Limits:
    """One agent's limits before grants; None: no limit."""

    tokens_5h: int | None = None
    tokens_7d: int | None = None
    usd_7d: float | None = None

    def tokens(self, window: BudgetWindow) -> int | None:
        return self.tokens_5h if window == "5h" else self.tokens_7d

    def usd(self, window: BudgetWindow) -> float | None:
        return self.usd_7d if window == "7d" else None


def limits_of(s: Services, agent: str) -> Limits:
    """The deployed agent.toml's `[budget]`, each key absent there from the settings."""
    own, st = s.configs.get(agent).budget, s.settings
    return Limits(
        own.tokens_5h if own.tokens_5h is not None else st.budget_tokens_5h,
        own.tokens_7d if own.tokens_7d is not None else st.budget_tokens_7d,
        own.usd_7d if own.usd_7d is not None else st.budget_usd_7d,
    )


@dataclass(frozen=True)
class Grant:
    """What granted budget approvals add to one agent's limits in one window."""

    tokens: int = 0
    usd: float = 0.0


def grants_in_windows(
    conn: sqlite3.Connection, now: float, agent: str | None = None
) -> dict[tuple[str, BudgetWindow], Grant]:
    """The grants still inside their window, summed per agent and window."""
    found: dict[tuple[str, BudgetWindow], Grant] = {}
    for window, length in WINDOWS.items():
        where, args = "budget_window = ? AND granted_at >= ?", params(window, now - length)
        if agent is not None:
            where, args = f"agent = ? AND {where}", params(agent, *args)
        rows = conn.execute(
            "SELECT agent, coalesce(sum(extra_tokens), 0), coalesce(sum(extra_usd), 0.0) "
            f"FROM budget_grants WHERE {where} GROUP BY agent",
            args,
        ).fetchall()
        for name, tokens, usd in rows:
            found[(name, window)] = Grant(int(tokens), float(usd))
    return found


@dataclass(frozen=True)
class Assessment:
    """One agent's window: its spend, its limits with grants, and how close it is."""

    window: BudgetWindow
    spend: Spend
    limit_tokens: int | None
    limit_usd: float | None
    state: State
    unit: Unit = "tokens"
    """The limit nearest to (or furthest past) being reached."""
    used: float = 0.0
    limit: float = 0.0

    def usage(self, agent: str) -> AgentUsage:
        sp = self.spend
        return AgentUsage(
            agent=agent, window=self.window, turns=sp.turns, input_tokens=sp.input_tokens,
            output_tokens=sp.output_tokens,
            cache_creation_input_tokens=sp.cache_creation_input_tokens,
            cache_read_input_tokens=sp.cache_read_input_tokens, tokens=sp.tokens,
            cost_usd=sp.cost_usd, limit_tokens=self.limit_tokens, limit_usd=self.limit_usd,
            state=self.state,
        )  # fmt: skip


def assess(
    window: BudgetWindow, spend: Spend, base: Limits, grant: Grant, warn_percent: int
) -> Assessment:
    """`spend` against `base` raised by `grant`: over at or past a limit, warning at or past
    `warn_percent` of one."""
    limit_tokens = base.tokens(window)
    limit_tokens = None if limit_tokens is None else limit_tokens + grant.tokens
    limit_usd = base.usd(window)
    limit_usd = None if limit_usd is None else limit_usd + grant.usd
    measured: list[tuple[float, Unit, float, float]] = []
    if limit_tokens is not None:
        measured.append((spend.tokens / limit_tokens, "tokens", spend.tokens, limit_tokens))
    if limit_usd is not None:
        measured.append((spend.cost_usd / limit_usd, "usd", spend.cost_usd, limit_usd))
    if not measured:
        return Assessment(window, spend, None, None, "ok")
    _, unit, used, limit = max(measured, key=lambda m: m[0])
    state: State = (
        "over" if used >= limit else "warning" if used * 100 >= limit * warn_percent else "ok"
    )
    return Assessment(window, spend, limit_tokens, limit_usd, state, unit, used, limit)


def amount(unit: Unit, value: float) -> str:
    """`2,000,000 tokens` or `$12.50`."""
    return f"${value:,.2f}" if unit == "usd" else f"{value:,.0f} tokens"


def grant_for(a: Assessment, base: Limits, percent: int) -> Grant:
    """What approving raises `a`'s reached limits by: what was spent past them, then
    `percent` of the limit before grants."""
    tokens, usd = 0, 0.0
    base_tokens, base_usd = base.tokens(a.window), base.usd(a.window)
    if a.limit_tokens is not None and base_tokens and a.spend.tokens >= a.limit_tokens:
        tokens = a.spend.tokens - a.limit_tokens + math.ceil(base_tokens * percent / 100)
    if a.limit_usd is not None and base_usd and a.spend.cost_usd >= a.limit_usd:
        usd = a.spend.cost_usd - a.limit_usd + base_usd * percent / 100
    return Grant(tokens, usd)


def offer(a: Assessment, base: Limits, percent: int) -> str:
    """`another 500,000 tokens in 5h`: what approving allows beyond what was spent."""
    if a.unit == "usd":
        return f"another {amount('usd', (base.usd(a.window) or 0.0) * percent / 100)} in {a.window}"
    more = math.ceil((base.tokens(a.window) or 0) * percent / 100)
    return f"another {amount('tokens', more)} in {a.window}"


def insert_grants(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    """Record grants; one per approval and window, so carrying one out twice adds nothing."""
    conn.executemany(
        "INSERT INTO budget_grants (agent, budget_window, extra_tokens, extra_usd, granted_at, "
        "approval_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (approval_id, budget_window) "
        "DO NOTHING",
        rows,
    )


def windows_of(
    conn: sqlite3.Connection, agent: str, now: float
) -> dict[BudgetWindow, tuple[Spend, Grant]]:
    """`agent`'s spend and grants in each window, read together."""
    grants = grants_in_windows(conn, now, agent)
    return {
        window: (spend_of(conn, agent, now - length, now), grants.get((agent, window), Grant()))
        for window, length in WINDOWS.items()
    }
