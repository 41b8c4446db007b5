"""This host's messages from the other hosts: from the hive's stream into its own broker.

A durable pull consumer (`msg-<host>`, explicit acks) reads `hive.<hive>.msg.<host>.*` in
stream order, one message in flight at a time: JetStream hands out the next only once the
last is acknowledged, so a delivery lost on the way (a pull request that died with its
connection) comes again before anything after it, and the commit order here is the
stream's order, which is each sender's order.

Each message is checked (its payload's origin is the subject's last token, which only
that host may publish; its sender is that host's agent, its operator, or its hive-core
with a helper event; its recipient is an agent here), committed into this host's broker
with its forward key as the idempotency key, and only then acknowledged. A redelivery (this
host died before the ack) finds the key used and is acknowledged as the duplicate it is. A
message that fails the checks is refused for good (`term`) and logged; one that cannot be
committed now is left unacknowledged and comes again, so order holds.

How a config proposal of another host ended is committed only after this host's copy of
that agent's config caught up with its directory entry (`Configs.catch_up`): the manager
told of a deploy finds the deployed commit in its working copy's remote.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from hive_core.errors import Conflict, HiveError, ShuttingDown, StorageError
from hive_core.federation import names
from hive_core.federation.directory import Directory
from hive_core.federation.link import Link
from hive_core.federation.names import Forwarded
from hive_core.federation.view import RemoteView
from hive_core.services import Services
from hive_share.helper import HIVE_SENDER, ApprovalResolved
from hive_share.names import OPERATOR

logger = logging.getLogger(__name__)

FETCH = 1
"""Messages asked for at once: one is handed out at a time (`max_ack_pending` 1), and a
fetch of more waits out its whole timeout for the rest."""
FETCH_WAIT = 5.0
"""Seconds one fetch waits for a message before asking again."""
ACK_WAIT = 10.0
"""Seconds JetStream waits for an ack before it delivers the message again (and, one being
in flight at a time, before anything after it)."""
RETRY = 1.0
"""Seconds before following the stream again after the link failed, and before a message
that could not be committed comes again."""


class Inbound:
    def __init__(
        self,
        s: Services,
        link: Link,
        directory: Directory,
        view: RemoteView,
        catch_up: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._s = s
        self._link = link
        self._directory = directory
        self._view = view
        self._catch_up = catch_up
        """Brings the mirror here of a host's agent's config up to date (`Configs.catch_up`)."""
        self.received = 0
        """Messages from other hosts committed here since start (duplicates not counted)."""
        self.refused = 0
        """Messages refused for good since start (each logged with why)."""

    async def run(self) -> None:
        """Follow this host's messages, until cancelled."""
        hive, host = self._link.hive, self._link.host
        config = ConsumerConfig(
            name=names.msg_consumer(host),  # created on a subject naming its filter:
            durable_name=names.msg_consumer(host),  # permissions can hold a host to its own
            filter_subject=names.msg_filter(hive, host),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ACK_WAIT,
            max_deliver=-1,
            max_ack_pending=1,
        )
        while True:
            await self._link.up()
            try:
                sub = await self._link.js.pull_subscribe(
                    names.msg_filter(hive, host),
                    durable=names.msg_consumer(host),
                    stream=names.msg_stream(hive),
                    config=config,
                )
                while True:
                    try:
                        batch = await sub.fetch(FETCH, timeout=FETCH_WAIT)
                    except nats.errors.TimeoutError:
                        continue
                    for msg in batch:  # one: `max_ack_pending` is 1
                        if not await self._take(msg):
                            await msg.nak(delay=RETRY)  # again in a moment, before the rest
            except (nats.errors.Error, TimeoutError) as exc:
                logger.warning("following this host's messages stopped: %s", exc)
            await anyio.sleep(RETRY)

    async def _take(self, msg: Msg) -> bool:
        """Commit and ack one message, or refuse it; False: it could not be committed now."""
        origin = msg.subject.rsplit(".", 1)[-1]
        try:
            fw = Forwarded.model_validate_json(msg.data)
        except ValidationError as exc:
            return await self._refuse(msg, origin, f"its payload is invalid: {exc.errors()[0]}")
        if fw.origin != origin:
            return await self._refuse(msg, origin, f"it claims to come from host {fw.origin}")
        if fw.event is not None and fw.sender != HIVE_SENDER:
            return await self._refuse(msg, origin, f"an event sent as {fw.sender}")
        if fw.sender not in (OPERATOR, HIVE_SENDER):  # the origin's hive-core: its own word
            holder = await self._holder(fw.sender, origin)
            if holder is None:
                return False  # the directory cannot tell now: again later
            if holder != origin:
                why = f"its sender {fw.sender} is not on that host ({holder or 'nowhere'})"
                return await self._refuse(msg, origin, why)
        ended = fw.event
        if isinstance(ended, ApprovalResolved) and ended.approval_kind == "apply_commit":
            await self._catch_up(origin, ended.agent)  # the manager pulls what it deployed
        key = names.forward_key(origin, fw.id)
        try:
            duplicate = await self._s.broker.accept(fw.sender, fw.recipient, fw.body, key, fw.event)
        except (StorageError, ShuttingDown) as exc:
            logger.warning("could not take message %s from %s now: %s", fw.id, origin, exc)
            return False
        except (Conflict, HiveError) as exc:
            return await self._refuse(msg, origin, exc.message)
        await msg.ack()
        if not duplicate:
            self.received += 1
        return True

    async def _holder(self, sender: str, origin: str) -> str | None:
        """The host holding `sender` (the view when it says `origin`, else the name claim);
        "" when no host does, None when the directory cannot be asked now."""
        if self._view.host_of(sender) == origin:
            return origin
        try:
            return await self._directory.holder(sender) or ""
        except HiveError as exc:
            logger.warning("could not look up the host of %s: %s", sender, exc)
            return None

    async def _refuse(self, msg: Msg, origin: str, why: str) -> bool:
        self.refused += 1
        logger.error("refused a message from host %s on %s: %s", origin, msg.subject, why)
        await msg.term()
        return True
