"""Structured questions: agent → operator and agent → agent, with TTL and cancel.

Rules: an operator-targeted question is answered only by the operator; an
agent-targeted one by that agent or by the operator as override; nobody asks
themselves; a question is resolved once. The asker always hears the outcome as
`QuestionAnswered`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Literal

from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.clock import Clock
from hive_core.db import Database
from hive_core.errors import Busy, Conflict, Forbidden, InvalidRequest, NotFound, UnknownAgent
from hive_core.rows import decode
from hive_share import events, helper
from hive_share.models import Question
from hive_share.names import OPERATOR

logger = logging.getLogger(__name__)

MAX_OPEN_PER_ASKER = 20
Outcome = Literal["answered", "cancelled", "expired"]
WATCHDOG = "watchdog"


def _with_options(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "options": json.loads(data["options"]) if data["options"] else None}


def _question(row: sqlite3.Row) -> Question:
    return decode(Question, "questions", row, _with_options)


class Questions:
    def __init__(
        self, db: Database, bus: EventBus, clock: Clock, broker: Broker, host: str
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._broker = broker
        self._host = host
        """This host's id: a target on another host is told where the question is held."""

    async def ask(
        self,
        asker: str,
        target: str | None,
        text: str,
        options: list[str] | None,
        ttl_seconds: float | None,
    ) -> Question:
        """Store a question and tell its target (an agent target gets `QuestionAsked`).

        Raises:
            InvalidRequest: asking yourself. UnknownAgent: no such target.
            Busy: the asker has too many open questions.
        """
        if target == asker:
            raise InvalidRequest("you cannot ask yourself; leave `to` empty to ask the operator")
        if target is not None and not self._broker.reaches(target):
            raise UnknownAgent(f"no agent named {target!r} to ask")
        now = self._clock.now()
        expires = now + ttl_seconds if ttl_seconds is not None else None

        def insert(conn: sqlite3.Connection) -> sqlite3.Row:
            open_count = conn.execute(
                "SELECT count(*) FROM questions WHERE asker = ? AND status = 'pending'", (asker,)
            ).fetchone()[0]
            if open_count >= MAX_OPEN_PER_ASKER:
                raise Busy(
                    f"{asker} already has {open_count} unanswered questions (the limit is "
                    f"{MAX_OPEN_PER_ASKER}); wait for answers before asking more"
                )
            row: sqlite3.Row = conn.execute(
                "INSERT INTO questions (asker, target, question, options, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (asker, target, text, json.dumps(options) if options else None, now, expires),
            ).fetchone()
            return row

        question = _question(await self._db.write(insert))
        self._bus.publish(events.QuestionAdded(question=question))
        if target is not None:  # another host's agent hears it through the outbox
            elsewhere = None if self._broker.knows(target) else self._host
            await self._broker.notify(
                target,
                helper.QuestionAsked(
                    id=question.id, asker=asker, question=text, options=options,
                    expires_at=expires, host=elsewhere,
                ),
            )  # fmt: skip
        return question

    async def get(self, question_id: int) -> Question:
        """Raises: NotFound."""
        row = await self._db.read(
            lambda c: c.execute("SELECT * FROM questions WHERE id = ?", (question_id,)).fetchone()
        )
        if row is None:
            raise NotFound(f"no question with id {question_id}")
        return _question(row)

    async def answer(self, question_id: int, answer: str, answerer: str) -> Question:
        """Resolve a question with an answer. `answerer` is `operator` or an agent name.

        Raises:
            NotFound, Forbidden (not yours to answer), Conflict (already resolved),
            InvalidRequest (not one of the options).
        """
        question = await self.get(question_id)
        if answerer != OPERATOR and question.target != answerer:
            whom = "the operator" if question.target is None else question.target
            raise Forbidden(f"question {question_id} is addressed to {whom}, not to you")
        if question.options and answer not in question.options:
            raise InvalidRequest(
                f"question {question_id} takes one of: {', '.join(question.options)}"
            )
        return await self._resolve(question, "answered", answer, answerer)

    async def cancel(self, question_id: int) -> Question:
        """Operator: withdraw a pending question. Raises: NotFound, Conflict."""
        return await self._resolve(await self.get(question_id), "cancelled", None, OPERATOR)

    async def expire_due(self, now: float) -> list[int]:
        """The TTL watchdog: expire every pending question past its time."""
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM questions WHERE status = 'pending' AND expires_at <= ? ORDER BY id",
                (now,),
            ).fetchall()
        )
        expired = []
        for row in rows:
            try:
                await self._resolve(_question(row), "expired", None, WATCHDOG)
            except Conflict:
                continue  # answered in the meantime
            except Exception:
                logger.exception("expiring question %d failed; the sweep goes on", row["id"])
                continue
            expired.append(row["id"])
        return expired

    async def _resolve(
        self, question: Question, outcome: Outcome, answer: str | None, answerer: str
    ) -> Question:
        now = self._clock.now()
        rows: list[sqlite3.Row] = []

        def update(conn: sqlite3.Connection) -> bool:
            row: sqlite3.Row | None = conn.execute(
                "UPDATE questions SET status = ?, answer = ?, answerer = ?, resolved_at = ? "
                "WHERE id = ? AND status = 'pending' RETURNING *",
                (outcome, answer, answerer, now, question.id),
            ).fetchone()
            if row is None:
                current = conn.execute(
                    "SELECT status FROM questions WHERE id = ?", (question.id,)
                ).fetchone()
                raise Conflict(f"question {question.id} is already {current[0]}")
            rows.append(row)
            return True

        told = helper.QuestionAnswered(
            id=question.id, question=question.question, outcome=outcome, answer=answer,
            answerer=answerer,
        )  # fmt: skip
        if self._broker.knows(question.asker):
            # Resolved and told in one transaction: the asker never misses its answer.
            await self._broker.notify(question.asker, told, together=update)
        else:
            logger.info("question %d resolved; its asker %s is gone", question.id, question.asker)
            await self._db.write(update)
        resolved = _question(rows[0])
        self._bus.publish(events.QuestionResolved(question=resolved))
        target = resolved.target
        if target is not None and target != answerer and self._broker.knows(target):
            await self._broker.notify(target, told)  # it need not answer any more
        return resolved

    async def count_pending(self) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM questions WHERE status = 'pending'"
            ).fetchone()
        )
        return int(row[0])

    async def pending(self, *, operator_only: bool = False) -> list[Question]:
        where = "status = 'pending'" + (" AND target IS NULL" if operator_only else "")
        rows = await self._db.read(
            lambda c: c.execute(f"SELECT * FROM questions WHERE {where} ORDER BY id").fetchall()
        )
        return [_question(r) for r in rows]

    async def ended_since(self, since: float, *, operator_only: bool = False) -> list[int]:
        """The ids of the questions answered, cancelled or expired at or after `since`."""
        where = "resolved_at >= ?" + (" AND target IS NULL" if operator_only else "")
        rows = await self._db.read(
            lambda c: c.execute(f"SELECT id FROM questions WHERE {where} ORDER BY id", (since,))
            .fetchall()
        )  # fmt: skip
        return [int(r[0]) for r in rows]

    async def open_for(self, agent: str) -> list[Question]:
        """Unanswered questions asked by `agent` or waiting for its answer."""
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM questions WHERE status = 'pending' AND (asker = ? OR target = ?) "
                "ORDER BY id",
                (agent, agent),
            ).fetchall()
        )
        return [_question(r) for r in rows]
