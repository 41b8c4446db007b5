"""The approval queue: requests the operator approves or denies (spawns, config commits,
updates, budget raises).

An approval changes state exactly once at each step, by a compare-and-set in the
database, before anything is done about it:

    pending ──approve──▶ in_progress ──▶ approved | failed
       └──────deny──────▶ denied

`claim` is the approve step: of two approvals of one request, or an approval racing a
deny, exactly one wins and the other is refused with nothing done.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from hive_core.bus import EventBus
from hive_core.clock import Clock
from hive_core.db import Database
from hive_core.errors import Conflict, NotFound
from hive_core.rows import decode
from hive_share import events
from hive_share.models import Approval, ApprovalKind, ApprovalStatus

OPEN = ("pending", "in_progress")
"""The statuses of an approval that has not ended."""


class _Keep:
    """A step that leaves the approval's reason as it is (a budget approval's description
    stays while it is claimed or reopened)."""


KEEP = _Keep()


def _columns(data: dict[str, Any]) -> dict[str, Any]:
    data["commit"] = data.pop("commit_sha")  # `commit` is an SQL keyword
    return data


def _approval(row: sqlite3.Row) -> Approval:
    return decode(Approval, "approvals", row, _columns)


class Approvals:
    def __init__(self, db: Database, bus: EventBus, clock: Clock) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock

    async def add(
        self,
        kind: ApprovalKind,
        agent: str,
        requester: str,
        *,
        commit: str | None = None,
        diff: str | None = None,
        reason: str | None = None,
    ) -> Approval:
        """Queue a pending approval; `reason` says why it is asked when that is not plain from
        its kind (a `budget` approval: what was reached and what approving grants).

        Raises:
            Conflict: the same kind is already pending for that agent.
        """
        now = self._clock.now()

        def insert(conn: sqlite3.Connection) -> sqlite3.Row:
            dup = conn.execute(
                "SELECT id, status FROM approvals "
                "WHERE status IN (?, ?) AND kind = ? AND agent = ?",
                (*OPEN, kind, agent),
            ).fetchone()
            if dup is not None:
                state = "pending" if dup[1] == "pending" else "being carried out"
                raise Conflict(f"a {kind} of {agent!r} is already {state} as approval {dup[0]}")
            row: sqlite3.Row = conn.execute(
                "INSERT INTO approvals (kind, agent, requester, created_at, commit_sha, diff, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (kind, agent, requester, now, commit, diff, reason),
            ).fetchone()
            return row

        approval = _approval(await self._db.write(insert))
        self._bus.publish(events.ApprovalAdded(approval=approval))
        return approval

    async def get(self, approval_id: int) -> Approval:
        """Raises: NotFound."""

        def select(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
            return row

        row = await self._db.read(select)
        if row is None:
            raise NotFound(f"no approval with id {approval_id}")
        return _approval(row)

    async def count_pending(self) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM approvals WHERE status = 'pending'"
            ).fetchone()
        )
        return int(row[0])

    async def pending(self) -> list[Approval]:
        """Every approval that has not ended: waiting for the operator, or being carried
        out."""

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM approvals WHERE status IN (?, ?) ORDER BY id", OPEN
            ).fetchall()

        return [_approval(r) for r in await self._db.read(select)]

    async def ended_since(self, since: float) -> list[int]:
        """The ids of the approvals that ended at or after `since`."""
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT id FROM approvals WHERE resolved_at >= ? ORDER BY id", (since,)
            ).fetchall()
        )
        return [int(r[0]) for r in rows]

    async def claim(self, approval_id: int) -> Approval:
        """pending → in_progress: the operator's approval, taken before anything is done.

        Raises:
            NotFound: no such approval.
            Conflict: it is not pending (approved or denied before, or being carried out).
        """
        approval = await self._move(approval_id, ("pending",), "in_progress", None, KEEP)
        self._bus.publish(events.ApprovalStarted(approval=approval))
        return approval

    async def reopen(self, approval_id: int) -> Approval:
        """in_progress → pending: it was interrupted before it changed anything (a restart
        found no trace of it), so the operator may approve it again. Raises: NotFound,
        Conflict."""
        approval = await self._move(approval_id, ("in_progress",), "pending", None, KEEP)
        self._bus.publish(events.ApprovalAdded(approval=approval))
        return approval

    async def resolve(
        self,
        approval_id: int,
        status: ApprovalStatus,
        reason: str | None,
        *,
        was: tuple[ApprovalStatus, ...] = ("pending",),
    ) -> Approval:
        """End an approval that is in one of the statuses `was` with `status`.

        Raises:
            NotFound: no such approval.
            Conflict: it is in none of them.
        """
        approval = await self._move(approval_id, was, status, self._clock.now(), reason)
        self._bus.publish(events.ApprovalResolved(approval=approval))
        return approval

    async def _move(
        self,
        approval_id: int,
        was: tuple[ApprovalStatus, ...],
        status: ApprovalStatus,
        resolved_at: float | None,
        reason: str | _Keep | None,
    ) -> Approval:
        marks = ", ".join("?" * len(was))
        keep = isinstance(reason, _Keep)
        setting = "reason = reason" if keep else "reason = ?"
        values = () if keep else (reason,)

        def update(conn: sqlite3.Connection) -> sqlite3.Row:
            row: sqlite3.Row | None = conn.execute(
                f"UPDATE approvals SET status = ?, resolved_at = ?, {setting} "
                f"WHERE id = ? AND status IN ({marks}) RETURNING *",
                (status, resolved_at, *values, approval_id, *was),
            ).fetchone()
            if row is None:
                current = conn.execute(
                    "SELECT kind, status FROM approvals WHERE id = ?", (approval_id,)
                ).fetchone()
                if current is None:
                    raise NotFound(f"no approval with id {approval_id}")
                raise Conflict(busy(approval_id, current[0], current[1]))
            return row

        return _approval(await self._db.write(update))


def busy(approval_id: int, kind: str, status: str) -> str:
    """Why an approval in `status` cannot be approved or denied now."""
    if status != "in_progress":
        return f"approval {approval_id} is already {status}"
    doing = {"apply_commit": "deploying", "spawn": "spawning", "update": "updating",
             "budget": "granting"}  # fmt: skip
    return f"approval {approval_id} is {doing.get(kind, 'being carried out')}"
