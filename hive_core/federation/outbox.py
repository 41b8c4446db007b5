"""Messages for other hosts' agents, from this host's database to the hive's stream.

A send to another host's agent is committed here first, with a `forwards` row naming the
destination host (the sender is answered then: the message is durable on its host). This
loop publishes the pending ones in id order, one at a time, each on
`hive.<hive>.msg.<dest>.<origin>` with `Nats-Msg-Id` set to its forward key, and marks them
forwarded (and, here, delivered) only after JetStream's acknowledgement. While NATS is
away it retries with a growing pause; a message published twice is stored once by the
stream within its window, and is a no-op on arrival after it (the same key).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict

import anyio
import nats.errors

from hive_core.federation import names
from hive_core.federation.link import JS_TIMEOUT, Link
from hive_core.federation.names import Forwarded
from hive_core.services import Services
from hive_share import events
from hive_share.helper import HELPER_EVENT

logger = logging.getLogger(__name__)

BATCH = 200
"""Pending messages read at once."""
RETRY_FIRST, RETRY_MOST = 0.25, 10.0
"""Seconds before publishing again after a failure: doubling up to this."""


class Outbox:
    def __init__(self, s: Services, link: Link) -> None:
        self._s = s
        self._link = link
        self._pending = anyio.Event()
        self.forwarded = 0
        """Messages this host handed to the stream since it started."""

    def poke(self) -> None:
        """A forward was committed: publish it soon."""
        self._pending.set()

    async def pending(self) -> int:
        """Messages committed for other hosts and not yet on the stream."""
        row = await self._s.db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM forwards WHERE forwarded_at IS NULL"
            ).fetchone()
        )
        return int(row[0])

    async def run(self) -> None:
        """Publish what is pending, until cancelled."""
        await self._link.up()
        delay = RETRY_FIRST
        while True:
            self._pending = anyio.Event()  # before reading: a poke from now on is seen
            rows = await self._s.db.read(_pending_rows)
            if not rows:
                await self._pending.wait()
                continue
            done = 0
            try:
                for row in rows:
                    await self._publish(row)
                    done += 1
                delay = RETRY_FIRST
            except (nats.errors.Error, TimeoutError) as exc:
                logger.warning("could not forward message %d: %s", rows[done]["id"], exc)
            if done:
                await self._mark([(r["id"], r["recipient"]) for r in rows[:done]])
            if done < len(rows):
                await anyio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST)

    async def _publish(self, row: sqlite3.Row) -> None:
        origin = self._link.host
        payload = Forwarded(
            origin=origin,
            id=row["id"],
            sender=row["sender"],
            recipient=row["recipient"],
            body=row["body"],
            sent_at=row["sent_at"],
            event=None if row["event"] is None else HELPER_EVENT.validate_json(row["event"]),
        )
        await self._link.js.publish(
            names.msg_subject(self._link.hive, row["host"], origin),
            payload.model_dump_json().encode(),
            timeout=JS_TIMEOUT,
            headers={"Nats-Msg-Id": names.forward_key(origin, row["id"])},
        )

    async def _mark(self, sent: list[tuple[int, str]]) -> None:
        """Forwarded, and delivered as far as this host goes (the destination host delivers
        it to its agent)."""
        now = self._s.clock.now()
        ids = [i for i, _ in sent]

        def update(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(ids))
            conn.execute(
                f"UPDATE forwards SET forwarded_at = ? WHERE message_id IN ({marks})", (now, *ids)
            )
            conn.execute(
                f"UPDATE messages SET delivered_at = ? WHERE id IN ({marks}) "
                "AND delivered_at IS NULL",
                (now, *ids),
            )

        await self._s.db.write(update)
        self.forwarded += len(sent)
        by_recipient: dict[str, list[int]] = defaultdict(list)
        for message_id, recipient in sent:
            by_recipient[recipient].append(message_id)
        for recipient, done in by_recipient.items():
            self._s.bus.publish(events.Delivered(recipient=recipient, ids=done, delivered_at=now))


def _pending_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = conn.execute(
        "SELECT m.id, m.sender, m.recipient, m.body, m.sent_at, m.event, f.host FROM forwards f "
        "JOIN messages m ON m.id = f.message_id WHERE f.forwarded_at IS NULL "
        "ORDER BY f.message_id LIMIT ?",
        (BATCH,),
    ).fetchall()
    return rows
