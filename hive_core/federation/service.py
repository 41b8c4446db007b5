"""The federation as one task of the daemon: the link, the directory, the outbox, the
inbound stream, the operator's items, the requests between hosts and the config repos
shared between them, and what the rest of hive-core asks of them.

The daemon makes a `Federation` only when `HIVE_NATS_URL` is set, loads its view of the
other hosts from hive.sqlite before the sockets open (so sends to their agents are taken
while NATS is away), and runs it beside everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import nats.errors
from anyio.abc import TaskGroup

from hive_core import agent_info, approval_flow, lifecycle
from hive_core.errors import AlreadyExists, HiveError
from hive_core.federation import names
from hive_core.federation.configs import Configs
from hive_core.federation.directory import HEARTBEAT, Directory
from hive_core.federation.inbound import Inbound
from hive_core.federation.items import Items
from hive_core.federation.link import Link
from hive_core.federation.outbox import Outbox
from hive_core.federation.rpc import Rpc
from hive_core.federation.view import RemoteView
from hive_core.services import Services
from hive_share import events
from hive_share import responses as rs
from hive_share.base import WireModel
from hive_share.models import AgentInfo, HostInfo, LinkState
from hive_share.names import MANAGER_NAME

logger = logging.getLogger(__name__)

PLACE_FRESH = 60.0
"""Seconds since a host's last heartbeat beyond which no agent is placed on it."""
REPUBLISH_RETRY = 2.0
"""Seconds before this host's agents are published again after a failure."""


class Federation:
    def __init__(self, s: Services) -> None:
        self._s = s
        st = s.settings
        self.host = st.host_id
        self.view = RemoteView(s.db, s.bus, st.host_id)
        self.link = Link(st, self._link_changed)
        self.directory = Directory(s, self.link, self.view, self.hosts_changed)
        self.configs = Configs(
            s, self.link, self.view, self.directory, lambda host, ask: self.rpc.call(host, ask)
        )
        self.directory.config_of = self.configs.ref
        self.directory.on_agent = self.configs.seen
        self.outbox = Outbox(s, self.link)
        self.inbound = Inbound(s, self.link, self.directory, self.view, self.configs.catch_up)
        self.items = Items(s, self.link)
        self.rpc = Rpc(
            self.link,
            lambda name: s.registry.find(name) is not None,
            self.view.host_of,
            self._spawn,
            self._request_spawn,
            self._answer,
            self.configs.receive,
        )
        self._republish = anyio.Event()
        self._tg: TaskGroup | None = None

    async def load(self) -> None:
        await self.view.load()

    # -- what the rest of hive-core asks -----------------------------------------------------

    def host_of(self, name: str) -> str | None:
        """The other host running `name`, if one does (the broker routes by it)."""
        return self.view.host_of(name)

    async def claim(self, name: str) -> None:
        """Hold a new agent's name across the hive (before a spawn).

        Raises:
            AlreadyExists: another host holds it, or the view says another host runs it.
            Unreachable: NATS is away.
        """
        await self.directory.claim(name)

    async def release(self, name: str) -> None:
        await self.directory.release(name)

    def remote_agents(self) -> list[AgentInfo]:
        """The other hosts' agents, as last seen, as `list` rows."""
        entries = sorted(self.view.agents.values(), key=lambda e: (e.host, e.name))
        return [self.view.info(e) for e in entries]

    async def hosts(self) -> list[HostInfo]:
        """This host and every other one this host has heard from."""
        now = self._s.clock.now()
        mine = HostInfo(
            host=self.host,
            this=True,
            link=self.link.state,
            link_error=self.link.error,
            dashboard_url=self._s.settings.public_url or self._s.dashboard_url,
            capacity=self._s.settings.host_capacity,
            agents=len(self._s.registry.all()),
            last_seen_seconds=0.0,
            pending_forwards=await self.outbox.pending(),
            forwarded=self.outbox.forwarded,
            received=self.inbound.received,
            refused=self.inbound.refused,
        )
        others = [
            HostInfo(
                host=seen.entry.host,
                this=False,
                dashboard_url=seen.entry.dashboard_url,
                capacity=seen.entry.capacity,
                agents=seen.entry.agents,
                last_seen_seconds=max(0.0, now - seen.seen_at),
                version=seen.entry.version,
            )
            for seen in sorted(self.view.hosts.values(), key=lambda h: h.entry.host)
        ]
        return [mine, *others]

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Every part, until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.link.run, name="nats link")
            tg.start_soon(self.directory.watch_agents, name="federation: agents")
            tg.start_soon(self.directory.watch_hosts, name="federation: hosts")
            tg.start_soon(self._heartbeats, name="federation: heartbeat")
            tg.start_soon(self._publish_agents, name="federation: this host's agents")
            tg.start_soon(self._follow_bus, name="federation: agent changes")
            tg.start_soon(self.outbox.run, name="federation: outbox")
            tg.start_soon(self.inbound.run, name="federation: inbound")
            tg.start_soon(self.rpc.serve, name="federation: requests")
            tg.start_soon(self.items.publish, name="federation: this host's items")
            tg.start_soon(self.items.follow, name="federation: the hive's items")
            tg.start_soon(self.configs.share, name="federation: this host's configs")
            tg.start_soon(self.configs.follow, name="federation: other hosts' configs")

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._tg is not None:
            self._tg.start_soon(work)

    async def forward(self, host: str, request: dict[str, Any]) -> WireModel:
        """Run an operator's request on `host` (an agent of it named); its answer.

        Raises:
            Unreachable: the host or NATS did not answer.
        """
        return await self.rpc.call(host, request)

    async def _request_spawn(self, name: str, requester: str) -> WireModel:
        """A spawn approval another host placed here."""
        approval = await approval_flow.request_spawn(self._s, name, requester)
        return rs.ApprovalResult(approval=approval)

    async def _answer(self, question_id: int, answer: str, answerer: str) -> WireModel:
        """Another host's agent answers a question held here."""
        question = await self._s.questions.answer(question_id, answer, answerer)
        return rs.QuestionResult(question=question)

    def page_on(self, host: str, link: str) -> str:
        """A link `host` made to one of its agents' pages, on the name its dashboard is
        reached by (its heartbeat's public or dashboard URL)."""
        seen = self.view.hosts.get(host)
        return names.page_on(None if seen is None else seen.entry.dashboard_url, link)

    def place(self) -> str:
        """The host a new agent goes to: the one with the most free places (its capacity
        less its agents), this one on a tie; hosts not heard from within `PLACE_FRESH`
        are left out."""
        now = self._s.clock.now()
        best, free = self.host, self._s.settings.host_capacity - len(self._s.registry.all())
        for name, seen in sorted(self.view.hosts.items()):
            if now - seen.seen_at > PLACE_FRESH:
                continue
            room = seen.entry.capacity - seen.entry.agents
            if room > free:
                best, free = name, room
        return best

    def hosts_changed(self) -> None:
        """Tell the bus the link's state and the hosts as they are now (soon: counting the
        pending forwards reads the database)."""
        if self._tg is not None:
            self._tg.start_soon(self._publish_hosts)

    async def _publish_hosts(self) -> None:
        hosts = await self.hosts()
        self._s.bus.publish(events.HostsChanged(link=self.link.state, hosts=hosts))

    def _link_changed(self, state: LinkState) -> None:
        self.hosts_changed()
        if state == "up":
            self._republish.set()  # entries may have been missed while it was away
            self.outbox.poke()
            self.items.poke()
            self.configs.poke()

    async def _heartbeats(self) -> None:
        await self.link.up()
        while True:
            try:
                await self.directory.heartbeat()
            except (HiveError, nats.errors.Error, TimeoutError) as exc:
                logger.debug("heartbeat not sent: %s", exc)
            await anyio.sleep(HEARTBEAT)

    async def _publish_agents(self) -> None:
        """Claim the names of this host's agents and publish their entries: once the link
        is up, and again after every time it came back."""
        await self.link.up()
        self._republish.set()
        while True:
            await self._republish.wait()
            self._republish = anyio.Event()
            failed = False
            for record in self._s.registry.all():
                try:
                    await self.directory.claim(record.name)
                    await self.directory.publish(agent_info.info(self._s, record))
                except AlreadyExists as exc:
                    logger.error("agent %s across the hive: %s", record.name, exc.message)
                except (HiveError, nats.errors.Error, TimeoutError) as exc:
                    logger.warning("could not publish agent %s: %s", record.name, exc)
                    failed = True
            if self._s.registry.find(MANAGER_NAME) is None and not self.host_of(MANAGER_NAME):
                await lifecycle.ensure_manager(self._s)  # one manager, on the first host up
            if failed:  # the link went meanwhile: again in a moment
                await anyio.sleep(REPUBLISH_RETRY)
                self._republish.set()

    async def _follow_bus(self) -> None:
        """Publish each change of this host's agents as it happens, and look at their configs
        after each one and each approval's ending (a deploy moves a config)."""
        await self.link.up()
        kinds = ("container_state_changed", "container_removed", "approval_resolved")
        while True:  # a destroy gives its entry back itself (`release`)
            sub = self._s.bus.subscribe(kinds=kinds)
            try:
                async for frame in sub:
                    event = frame.event
                    self.configs.noticed(event)
                    try:
                        if (
                            isinstance(event, events.ContainerStateChanged)
                            and event.agent.host == self.host  # not another host's, seen here
                            and self._s.registry.find(event.agent.name) is not None
                        ):
                            await self.directory.publish(event.agent)
                    except (HiveError, nats.errors.Error, TimeoutError) as exc:
                        logger.debug("agent change not published (republished later): %s", exc)
                        self._republish.set()  # the republisher waits before it tries again
            finally:
                sub.close()
