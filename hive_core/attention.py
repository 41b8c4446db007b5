"""The attention list: everything that waits on the operator or signals trouble, ranked.

Each item is derived from the state that causes it (a pending approval, an open question to
the operator, an unread operator message, a crashed or given-up agent, a login problem, a
failed deploy, a harness running other code), so it leaves the list exactly when its cause
is resolved, never by a timer. `Attention.refresh` recomputes the list after each event on
the bus and publishes `attention_changed` with the whole list when it changed; the
dashboard shows it first, `hive-core attention` prints it, and the manager's
`hive_status` tool returns it without the operator's own inbox.

Ranked by severity (urgent, warn, info), then age (oldest first).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio

from hive_core import message_reads
from hive_core.services import Services
from hive_share.events import AttentionChanged, DashboardEvent, Resync, Sent
from hive_share.models import AttentionItem, Severity
from hive_share.names import OPERATOR

logger = logging.getLogger(__name__)

RANK: dict[Severity, int] = {"urgent": 0, "warn": 1, "info": 2}
SETTLE = 0.05
"""Seconds the refresher lets a burst of events land before it recomputes once."""
SUMMARY_CHARS = 160
LOGIN_EXPIRY_WARN = 24 * 3600.0
"""A login that stops working by itself within this many seconds is `login_expiring`."""


@dataclass(frozen=True)
class CrashState:
    """What the crash watch knows about one agent: restarting after a crash, or given up."""

    since: float
    detail: str
    gave_up: bool


CrashView = Callable[[], dict[str, CrashState]]


MESSAGE_KINDS = frozenset({"sent", "leased", "released", "delivered"})


def bears_on_the_list(event: DashboardEvent) -> bool:
    """Whether `event` may change the list: a message's events do only when the operator
    receives it (their unread inbox); everything else may, but the list's own
    `attention_changed`. Who sends what between agents reaches the list through the stuck
    watch, whose signals publish the agents' rows."""
    if event.kind == "attention_changed":
        return False
    if event.kind not in MESSAGE_KINDS:
        return True
    if isinstance(event, Sent):
        return event.message.recipient == OPERATOR
    return getattr(event, "recipient", None) == OPERATOR


def ranked(items: Iterable[AttentionItem]) -> list[AttentionItem]:
    return sorted(items, key=lambda i: (RANK[i.severity], i.since, i.key))


def _unread(count: int, oldest: float, host: str | None) -> AttentionItem:
    """The item of an operator inbox with unread messages: this host's, or `host`'s."""
    where, held = _held(host)
    return AttentionItem(
        key="inbox" if host is None else f"inbox:{host}",
        kind="operator_message",
        agent=None,
        summary=f"{count} unread message{'s' if count != 1 else ''} to the operator{where}",
        since=oldest,
        severity="info",
        action=f"hive-core inbox{held}",
        host=host,
    )


def _held(host: str | None) -> tuple[str, str]:
    """How a summary and a command name the host holding an item: nothing for this host's,
    ` on HOST` and ` --host HOST` for another's."""
    return ("", "") if host is None else (f" on {host}", f" --host {host}")


def _line(text: str) -> str:
    """The first line of `text`, cut to SUMMARY_CHARS."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= SUMMARY_CHARS else first[: SUMMARY_CHARS - 1] + "…"


class Attention:
    """Computes and keeps the attention list; `run` follows the bus."""

    def __init__(self, s: Services, crashes: CrashView, outdated: Callable[[str], bool]) -> None:
        self._s = s
        self._crashes = crashes
        self._outdated = outdated
        self._first_seen: dict[str, float] = {}
        """When hive-core first saw an item whose cause carries no time of its own."""
        self.items: list[AttentionItem] = []

    async def compute(self) -> list[AttentionItem]:
        items = [
            *await self._approvals(),
            *await self._questions(),
            *await self._operator_inbox(),
            *self._crashed(),
            *await self._logins(),
            *await self._deploys(),
            *self._updates(),
            *self._s.stuck.items(),
            *await self._s.usage.items(),
        ]
        keys = {i.key for i in items}
        self._first_seen = {k: t for k, t in self._first_seen.items() if k in keys}
        return ranked(items)

    async def refresh(self) -> bool:
        """Recompute; publish `attention_changed` when the list changed."""
        items = await self.compute()
        if items == self.items:
            return False
        self.items = items
        self._s.bus.publish(AttentionChanged(items=items))
        return True

    async def run(self) -> None:
        """Refresh after each burst of bus events (its own `attention_changed` aside)."""
        while True:
            sub = self._s.bus.subscribe(where=bears_on_the_list)
            try:
                await self._refresh_logged()
                async for _frame in sub:  # ends after a resync: subscribe again and refresh
                    await anyio.sleep(SETTLE)  # let the rest of a burst land
                    if any(isinstance(f.event, Resync) for f in sub.ready()):
                        break  # what the burst left queued is covered by this refresh
                    await self._refresh_logged()
            finally:
                sub.close()

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except Exception:  # the next event tries again
            logger.exception("could not recompute the attention list")

    def _since(self, key: str) -> float:
        return self._first_seen.setdefault(key, self._s.clock.now())

    async def _approvals(self) -> list[AttentionItem]:
        items = []
        fed = self._s.federation
        remote = [] if fed is None else fed.items.remote_approvals()
        for a in [*await self._s.approvals.pending(), *remote]:
            if a.kind == "budget" and a.host is None:
                continue  # its over_budget item stands for it (ref: the approval's id)
            what = {"spawn": f"spawn {a.agent}", "apply_commit": f"deploy a config to {a.agent}",
                    "update": "update every outdated agent",
                    "budget": f"let {a.agent} spend more"}[a.kind]  # fmt: skip
            under_way = " (under way)" if a.status == "in_progress" else ""
            where, held = _held(a.host)
            items.append(
                AttentionItem(
                    key=f"approval:{a.host + ':' if a.host else ''}{a.id}",
                    kind="approval",
                    agent=None if a.kind == "update" else a.agent,
                    summary=f"approval {a.id}{where}: {what}{under_way}",
                    since=a.created_at,
                    severity="info" if under_way else "warn",
                    action=f"hive-core show {a.id}{held}; "
                    f"hive-core approve {a.id}{held} or deny {a.id}{held}",
                    ref=a.id,
                    host=a.host,
                )
            )
        return items

    async def _questions(self) -> list[AttentionItem]:
        fed = self._s.federation
        remote = [] if fed is None else fed.items.remote_questions()
        items = []
        for q in [*await self._s.questions.pending(operator_only=True), *remote]:
            where, held = _held(q.host)
            items.append(
                AttentionItem(
                    key=f"question:{q.host + ':' if q.host else ''}{q.id}",
                    kind="question",
                    agent=q.asker,
                    summary=f"{q.asker}{where} asks: {_line(q.question)}",
                    since=q.created_at,
                    severity="warn",
                    action=f"hive-core answer {q.id} ANSWER{held}",
                    ref=q.id,
                    host=q.host,
                )
            )
        return items

    async def _operator_inbox(self) -> list[AttentionItem]:
        count, oldest = await message_reads.unread(self._s.db, OPERATOR)
        items = []
        if count and oldest is not None:
            items.append(_unread(count, oldest, None))
        fed = self._s.federation
        for host, inbox in [] if fed is None else sorted(fed.items.inboxes.items()):
            if inbox.unread and inbox.oldest_unread is not None:
                items.append(_unread(inbox.unread, inbox.oldest_unread, host))
        return items

    def _crashed(self) -> list[AttentionItem]:
        items = []
        for name, state in self._crashes().items():
            if self._s.registry.find(name) is None:
                continue
            if state.gave_up:
                summary = f"{name} crashed too often and stays stopped: {state.detail}"
                action = f"hive-core logs {name}; hive-core start {name}"
            else:
                summary = f"{name} crashed and is being restarted: {state.detail}"
                action = f"hive-core logs {name}"
            items.append(
                AttentionItem(
                    key=f"crash:{name}",
                    kind="given_up" if state.gave_up else "crashed",
                    agent=name,
                    summary=summary,
                    since=state.since,
                    severity="urgent" if state.gave_up else "warn",
                    action=action,
                )
            )
        return items

    async def _logins(self) -> list[AttentionItem]:
        items = []
        for record in self._s.registry.all():
            name = record.name
            status = self._s.liveness.login.get(name)
            if record.desired != "running":
                continue
            if status == "logged_in":
                items += self._expiring(name)
                continue
            if status not in ("needs_login", "claude_missing"):
                continue
            waiting = await self._s.broker.undelivered_count(name)
            queued = f"; {waiting} message{'s' if waiting != 1 else ''} wait" if waiting else ""
            if status == "needs_login":
                summary = f"{name}'s Claude Code is not logged in{queued}"
                action = f"hive-core login {name} (or log in on its page)"
            else:
                summary = f"{name} cannot run Claude Code{queued}"
                action = f"install Claude Code, then hive-core restart {name}"
            key = f"{status}:{name}"
            items.append(
                AttentionItem(
                    key=key,
                    kind=status,
                    agent=name,
                    summary=summary,
                    since=self._s.liveness.login_since.get(name) or self._since(key),
                    severity="urgent" if waiting or status == "claude_missing" else "warn",
                    action=action,
                )
            )
        return items

    def _expiring(self, name: str) -> list[AttentionItem]:
        """A login its credentials say stops working within LOGIN_EXPIRY_WARN."""
        expires = self._s.liveness.login_expires.get(name)
        left = None if expires is None else expires - self._s.clock.now()
        if left is None or left > LOGIN_EXPIRY_WARN:
            return []
        when = (
            f"in {left / 3600:.0f} h" if left > 3600 else "within the hour" if left > 0 else "now"
        )
        assert expires is not None
        return [
            AttentionItem(
                key=f"login_expiring:{name}",
                kind="login_expiring",
                agent=name,
                summary=f"{name}'s Claude Code login expires {when}",
                since=expires - LOGIN_EXPIRY_WARN,
                severity="warn",
                action=f"hive-core login {name} (or log in on its page) before it does",
            )
        ]

    async def _deploys(self) -> list[AttentionItem]:
        """Agents whose latest carried-out config deploy failed (and was rolled back)."""

        def latest_failed(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT a.* FROM approvals a WHERE a.kind = 'apply_commit' "
                "AND a.status = 'failed' AND NOT EXISTS (SELECT 1 FROM approvals b "
                "WHERE b.kind = 'apply_commit' AND b.agent = a.agent "
                "AND b.status IN ('approved', 'failed', 'in_progress') AND b.id > a.id)"
            ).fetchall()

        items = []
        for row in await self._s.db.read(latest_failed):
            name = row["agent"]
            if self._s.registry.find(name) is None:
                continue
            reason = _line(row["reason"] or "see its log")
            items.append(
                AttentionItem(
                    key=f"deploy:{row['id']}",
                    kind="deploy_failed",
                    agent=name,
                    summary=f"deploy {row['id']} to {name} failed: {reason}",
                    since=row["resolved_at"] or row["created_at"],
                    severity="warn",
                    action=f"hive-core show {row['id']}; hive-core logs {name}",
                    ref=row["id"],
                )
            )
        return items

    def _updates(self) -> list[AttentionItem]:
        return [
            AttentionItem(
                key=f"update:{r.name}",
                kind="needs_update",
                agent=r.name,
                summary=f"{r.name}'s harness runs other code than hive-core",
                since=self._since(f"update:{r.name}"),
                severity="info",
                action="hive-core update",
            )
            for r in self._s.registry.all()
            if self._outdated(r.name)
        ]


def for_manager(items: Iterable[AttentionItem]) -> list[AttentionItem]:
    """The list as the manager sees it: without the operator's own inbox."""
    return [i for i in items if i.kind != "operator_message"]
