"""The operator's approvals and questions across hosts: each host publishes the state of
its own, and mirrors the others' open ones.

An approval or an operator question belongs to the host where it was asked (the host of
the agent it concerns): it is decided there, exactly once, by that host's compare-and-set.
Its state is published on `hive.<hive>.events.<host>.<kind>.<id>` in the hive's item
stream, which keeps only the last message of each subject; every host follows the whole
stream from each subject's last message, so one that starts late or was away sees every
item as it is now. The other hosts' open items are kept in memory here: `pending`,
`questions` and the dashboard show them beside this host's own, and an approve, deny,
answer or cancel of one is a request to its host (`rpc`), answered with what happened
there (a second approve: "already approved").

What is published is the item as this host's database holds it at that moment, one
publication at a time, so a subject's last message is its item's last state. Each carries a
sequence number that only grows (from the clock at start, then by one), and a reader skips
an item's state older than one it took. A change that could not be published (NATS away) is
kept and published once the link is back; at start every open item, and every item ended
within `RECENT`, is published again (a change still unpublished when the last run ended).
"""

from __future__ import annotations

import logging

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from pydantic import ValidationError

from hive_core import message_reads
from hive_core.bus import Subscription
from hive_core.errors import HiveError
from hive_core.federation import names
from hive_core.federation.link import JS_TIMEOUT, Link
from hive_core.federation.names import ItemEntry, ItemKind
from hive_core.services import Services
from hive_share import events
from hive_share.events import DashboardEvent
from hive_share.models import Approval, InboxSummary, Message, Question
from hive_share.names import OPERATOR

logger = logging.getLogger(__name__)

RECENT = 24 * 3600.0
"""Seconds back from start within which ended items are published again."""
RETRY = 2.0
"""Seconds before publishing or following again after a failure."""
MAX_DIFF = 200_000
"""Characters of a proposed commit's diff published with its approval; a longer one is
left out (`hive-core show ID --host H` reads it from its host)."""
INBOX_RECENT = 20
"""The newest messages of this host's operator inbox the others show."""
INBOX_BODY = 2000
"""Characters of each of their bodies the others show (`hive-core inbox --host` reads them
whole)."""
KINDS = ("approval_added", "approval_started", "approval_resolved")
QUESTION_KINDS = ("question_added", "question_resolved")
INBOX_KINDS = ("sent", "delivered")


def _own(event: DashboardEvent) -> bool:
    """An event of one of this host's own approvals or operator questions, or of its
    operator inbox."""
    if isinstance(event, events.ApprovalAdded | events.ApprovalStarted | events.ApprovalResolved):
        return event.approval.host is None
    if isinstance(event, events.QuestionAdded | events.QuestionResolved):
        return event.question.host is None and event.question.target is None
    if isinstance(event, events.Sent):
        return event.message.recipient == OPERATOR
    if isinstance(event, events.Delivered):
        return event.recipient == OPERATOR
    return False


def _cut(message: Message) -> Message:
    if len(message.body) <= INBOX_BODY:
        return message
    return message.model_copy(update={"body": message.body[:INBOX_BODY] + " … (cut)"})


class Items:
    def __init__(self, s: Services, link: Link) -> None:
        self._s = s
        self._link = link
        self._dirty: dict[tuple[ItemKind, int], None] = {}
        """This host's items whose state is still to be published, in the order they
        changed."""
        self._wake = anyio.Event()
        self._seq = 0
        self.approvals: dict[tuple[str, int], Approval] = {}
        """The other hosts' open approvals, by (host, id)."""
        self.questions: dict[tuple[str, int], Question] = {}
        """The other hosts' open operator questions, by (host, id)."""
        self.inboxes: dict[str, InboxSummary] = {}
        """The other hosts' operator inboxes, by host."""
        self._taken: dict[tuple[str, str, int], int] = {}
        """The highest sequence number taken for each item of another host."""

    def remote_approvals(self) -> list[Approval]:
        return sorted(self.approvals.values(), key=lambda a: (a.created_at, a.host or "", a.id))

    def remote_questions(self) -> list[Question]:
        return sorted(self.questions.values(), key=lambda q: (q.created_at, q.host or "", q.id))

    def poke(self) -> None:
        """The link is back: publish what is waiting."""
        self._wake.set()

    # -- this host's items -----------------------------------------------------------------

    async def publish(self) -> None:
        """Publish the state of each of this host's items as it changes, until cancelled."""
        sub = self._s.bus.subscribe(
            kinds=(*KINDS, *QUESTION_KINDS, *INBOX_KINDS), where=_own, maxsize=0
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._note, sub)
                await self._note_at_start()
                while True:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    if not await self._drain():
                        await anyio.sleep(RETRY)
                        self._wake.set()
        finally:
            sub.close()

    async def _note(self, sub: Subscription) -> None:
        async for frame in sub:
            event = frame.event
            if isinstance(event, events.QuestionAdded | events.QuestionResolved):
                self._dirty[("question", event.question.id)] = None
            elif isinstance(
                event, events.ApprovalAdded | events.ApprovalStarted | events.ApprovalResolved
            ):
                self._dirty[("approval", event.approval.id)] = None
            elif isinstance(event, events.Sent | events.Delivered):
                self._dirty[("inbox", 0)] = None
            self._wake.set()

    async def _note_at_start(self) -> None:
        since = self._s.clock.now() - RECENT
        for approval in await self._s.approvals.pending():
            self._dirty[("approval", approval.id)] = None
        for approval_id in await self._s.approvals.ended_since(since):
            self._dirty[("approval", approval_id)] = None
        for question in await self._s.questions.pending(operator_only=True):
            self._dirty[("question", question.id)] = None
        for question_id in await self._s.questions.ended_since(since, operator_only=True):
            self._dirty[("question", question_id)] = None
        self._dirty[("inbox", 0)] = None
        self._seq = int(self._s.clock.now() * 1_000_000)
        self._wake.set()

    async def _drain(self) -> bool:
        """Publish every waiting item; False: the link failed (what is left waits)."""
        await self._link.up()
        while self._dirty:
            if self._link.state != "up":
                return True  # `poke` comes when it is back
            key = next(iter(self._dirty))
            del self._dirty[key]
            try:
                entry = await self._entry(*key)
                subject = names.events_subject(self._link.hive, self._link.host, *key)
                await self._link.js.publish(
                    subject,
                    entry.model_dump_json().encode(),
                    timeout=JS_TIMEOUT,
                    stream=names.events_stream(self._link.hive),
                )
            except HiveError as exc:  # not in the database (a defect): nothing to publish
                logger.error("could not read %s %d to publish it: %s", *key, exc.message)
            except (nats.errors.Error, TimeoutError) as exc:
                self._dirty = {key: None, **self._dirty}
                logger.warning("could not publish %s %d to the hive: %s", *key, exc)
                return False
        return True

    async def _entry(self, kind: ItemKind, item_id: int) -> ItemEntry:
        self._seq += 1
        if kind == "inbox":
            return ItemEntry(host=self._link.host, seq=self._seq, inbox=await self._inbox())
        if kind == "question":
            question = await self._s.questions.get(item_id)
            return ItemEntry(host=self._link.host, seq=self._seq, question=question)
        approval = await self._s.approvals.get(item_id)
        if approval.diff is not None and len(approval.diff) > MAX_DIFF:
            approval = approval.model_copy(update={"diff": None})
        return ItemEntry(host=self._link.host, seq=self._seq, approval=approval)

    async def _inbox(self) -> InboxSummary:
        count, oldest = await message_reads.unread(self._s.db, OPERATOR)
        recent = await self._s.broker.operator_recent(INBOX_RECENT)
        return InboxSummary(
            unread=count, oldest_unread=oldest, recent=[_cut(m) for m in reversed(recent)]
        )

    # -- the other hosts' items ------------------------------------------------------------

    async def follow(self) -> None:
        """Mirror the other hosts' open items, until cancelled."""
        hive = self._link.hive
        while True:
            await self._link.up()
            try:
                sub = await self._link.js.subscribe(
                    names.events_filter(hive),
                    stream=names.events_stream(hive),
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                    inactive_threshold=300,
                )
                try:
                    async for msg in sub.messages:
                        self._take(msg)
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                        await sub.unsubscribe()
            except (nats.errors.Error, TimeoutError) as exc:
                logger.warning("following the hive's approvals and questions stopped: %s", exc)
            await anyio.sleep(RETRY)

    def _take(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) != 6 or parts[3] == self._link.host:
            return
        host, kind, ref = parts[3], parts[4], parts[5]
        try:
            entry = ItemEntry.model_validate_json(msg.data)
        except ValidationError as exc:
            self._refuse(msg.subject, f"its payload is invalid: {exc.errors()[0]['msg']}")
            return
        if kind == "inbox":
            if entry.host != host or entry.inbox is None or ref != "0":
                self._refuse(msg.subject, f"it names host {entry.host} and another item")
            elif entry.seq > self._taken.get((host, kind, 0), 0):
                self._taken[(host, kind, 0)] = entry.seq
                self.inboxes[host] = entry.inbox
                self._s.bus.publish(events.RemoteInbox(host=host, inbox=entry.inbox))
            return
        item = entry.approval if kind == "approval" else entry.question
        if entry.host != host or item is None or str(item.id) != ref:
            self._refuse(msg.subject, f"it names host {entry.host} and another item")
            return
        key = (host, kind, item.id)
        if entry.seq <= self._taken.get(key, 0):
            return
        self._taken[key] = entry.seq
        if isinstance(item, Approval):
            self._approval(item.model_copy(update={"host": host}))
        else:
            self._question(item.model_copy(update={"host": host}))

    def _refuse(self, subject: str, why: str) -> None:
        logger.error("refused the item on %s: %s", subject, why)

    def _approval(self, approval: Approval) -> None:
        key = (approval.host or "", approval.id)
        before = self.approvals.get(key)
        if approval.status in ("pending", "in_progress"):
            self.approvals[key] = approval
            if before is None:
                self._s.bus.publish(events.ApprovalAdded(approval=approval))
            elif approval.status == "in_progress" and before.status != "in_progress":
                self._s.bus.publish(events.ApprovalStarted(approval=approval))
        elif self.approvals.pop(key, None) is not None:
            self._s.bus.publish(events.ApprovalResolved(approval=approval))

    def _question(self, question: Question) -> None:
        key = (question.host or "", question.id)
        if question.target is not None:
            return
        if question.status == "pending":
            if key not in self.questions:
                self.questions[key] = question
                self._s.bus.publish(events.QuestionAdded(question=question))
        elif self.questions.pop(key, None) is not None:
            self._s.bus.publish(events.QuestionResolved(question=question))
