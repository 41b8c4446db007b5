"""The dashboard's snapshot (`GET /api/state`), kept current by the bus's events.

A fetch used to read everything afresh: a ping to every harness, a dozen database reads, a
model per row. Now the snapshot is built once and then follows the bus, under one lock:

- agents, the message flow, the attention list and the usage report are kept from the
  events themselves (`container_state_changed` carries the agent's whole row, `sent` the
  message, `leased`/`released`/`delivered` its state, `attention_changed` the whole list,
  `usage_changed` the agent's rows and the hive's);
- approvals, questions and the operator's inbox are marked stale by their events and read
  again by the next fetch (rare, and their rows are made by the database);
- transients and the notification URLs' status are read from memory at each fetch.

A fetch applies every event published before it (`Subscription.ready`), takes `seq` there,
then reads what is stale: what it serves reflects at least every event up to `seq`, never
less, so the page's seq dance holds. `follow` applies events as they come (a task of the
dashboard's), so the subscription's queue never fills; if it does (the loop starved), the
next fetch builds the snapshot anew. Rows are encoded to JSON once and kept; a fetch joins
them.

The harnesses are pinged off the request path: after a fetch, at most every
`PROBE_INTERVAL`, `probe` pings every running harness and publishes the rows whose `alive`
it contradicts (a harness that runs but no longer answers, or answers again), so every open
page hears it too.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from hive_core import __version__, agent_dirs, agent_info
from hive_core.bus import Subscription
from hive_core.dashboard.views import FLOW_PAGE, INBOX_PAGE
from hive_core.liveness import ping
from hive_core.message_reads import RESPONSE_BUDGET
from hive_core.services import Services
from hive_share import events
from hive_share.events import Frame
from hive_share.models import AgentInfo, AgentState, HostInfo, LinkState, Message, dump
from hive_share.names import OPERATOR

QUEUE = 8192
"""Events the subscription may hold before `follow` applies them; past it, the next fetch
builds anew."""
USAGE_MAX_AGE = 60.0
"""Seconds the usage report is served before it is read again: its windows move with time,
which no event says."""
PROBE_INTERVAL = 5.0
"""Seconds at least between two pings of every harness (each after a fetch)."""

FLOW_STATES = {"queued": 0, "leased": 1, "delivered": 2}
TOMB_STATES = {"tombstone", "prepared"}
DB_SECTIONS = ("approvals", "questions", "inbox")


def encode(value: Any) -> str:
    """JSON as FastAPI's JSONResponse writes it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def message_size(message: Message) -> int:
    """What a message counts against `RESPONSE_BUDGET` (as `message_reads.fit` counts)."""
    size = len(json.dumps(message.body, ensure_ascii=False).encode("utf-8")) + 200
    if message.event is not None:
        size += len(message.event.model_dump_json())
    return size


@dataclass
class _Row:
    """One agent's row: its model as the last event (or the build) had it, dumped once."""

    info: AgentInfo
    data: dict[str, Any] | None = None

    def dumped(self) -> dict[str, Any]:
        if self.data is None:
            self.data = dump(self.info)
        return self.data


@dataclass
class _Flowing:
    """One message of the flow: its fields, its state, its encoded JSON once asked for."""

    id: int
    fields: dict[str, Any]
    state: str
    size: int
    text: str | None = None

    def encoded(self) -> str:
        if self.text is None:
            self.text = encode({**self.fields, "state": self.state})
        return self.text


@dataclass
class _Flow:
    """The newest `FLOW_PAGE` messages that fit one reply, oldest first, and whether older
    ones exist, kept from `sent`, `leased`, `released` and `delivered`."""

    items: list[_Flowing] = field(default_factory=list)
    more: bool = False
    by_id: dict[int, _Flowing] = field(default_factory=dict)

    def reset(self, s: Services, messages: Iterable[Message], more: bool) -> None:
        self.items, self.by_id, self.more = [], {}, more
        for m in messages:
            self._insert(_Flowing(m.id, dump(m), s.broker.flow_state(m), message_size(m)))

    def _insert(self, item: _Flowing) -> None:
        if self.items and item.id < self.items[-1].id:  # rare: ids are published in order
            self.items.insert(bisect.bisect([i.id for i in self.items], item.id), item)
        else:
            self.items.append(item)
        self.by_id[item.id] = item

    def sent(self, message: Message) -> None:
        known = self.by_id.get(message.id)
        if known is not None:
            return
        if self.items and message.id < self.items[0].id and len(self.items) >= FLOW_PAGE:
            return  # older than the window: a page of backfill has it
        self._insert(_Flowing(message.id, dump(message), "queued", message_size(message)))
        self._trim()

    def _trim(self) -> None:
        while len(self.items) > FLOW_PAGE:
            self.more = True
            del self.by_id[self.items.pop(0).id]
        used = sum(i.size for i in self.items)
        while len(self.items) > 1 and used > RESPONSE_BUDGET:
            self.more = True
            gone = self.items.pop(0)
            used -= gone.size
            del self.by_id[gone.id]

    def mark(self, ids: Iterable[int], state: str, delivered_at: float | None = None) -> None:
        for mid in ids:
            item = self.by_id.get(mid)
            if item is None:
                continue
            if state == "queued":  # released: only a leased message goes back
                if item.state != "leased":
                    continue
            elif FLOW_STATES[item.state] >= FLOW_STATES[state]:
                continue
            item.state = state
            if delivered_at is not None:
                item.fields = {**item.fields, "delivered_at": delivered_at}
            item.text = None

    def encoded(self) -> str:
        return "[" + ",".join(i.encoded() for i in self.items) + "]"


@dataclass
class _Usage:
    """The usage report (`usage`, `hourly`), kept from `usage_changed`."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    hourly: list[dict[str, Any]] = field(default_factory=list)
    read_at: float = float("-inf")
    text: str | None = None

    def changed(self, ev: events.UsageChanged) -> None:
        """The agent's rows where they were (a new agent's before the totals), the hive's
        totals replaced, and the agent's hours."""
        mine = [dump(u) for u in ev.usage if u.agent == ev.agent]
        totals = [dump(u) for u in ev.usage if u.agent != ev.agent]
        replaced = {ev.agent, *(t["agent"] for t in totals)}
        rows: list[dict[str, Any]] = []
        for row in self.rows:
            if row["agent"] == ev.agent and mine:
                rows += mine
                mine = []
            if row["agent"] not in replaced:
                rows.append(row)
        self.rows = [*rows, *mine, *totals]
        self.hourly = [h for h in self.hourly if h["agent"] != ev.agent]
        self.hourly += [dump(h) for h in ev.hourly]
        self.text = None


class Snapshot:
    """What `GET /api/state` serves, kept current (see the module's docstring)."""

    def __init__(self, s: Services) -> None:
        self.s = s
        self._lock = anyio.Lock()
        self._sub: Subscription | None = None
        self._held: list[Frame] = []
        """Frames `follow` took off the queue and has not applied yet: they come first."""
        self._built = False
        self._agents: dict[str, _Row] = {}
        self._flow = _Flow()
        self._usage = _Usage()
        self._usage_stale = True
        self._attention = "[]"
        self._hosts = _hosts_text(None, [])
        """The hive's hosts as `hosts_changed` last told them (a hive of one host: none)."""
        self._sections: dict[str, str] = {}
        self._stale: set[str] = set()
        self._wanted = anyio.Event()

    # -- what a fetch gets ---------------------------------------------------------------

    async def body(self) -> bytes:
        """The snapshot as the JSON `GET /api/state` answers."""
        async with self._lock:
            seq = await self._refresh()
            text = self._encode(seq)
        self._wanted.set()
        return text.encode("utf-8")

    async def _refresh(self) -> int:
        """Apply what happened; returns the `seq` the snapshot reflects at least."""
        for _ in range(3):  # a subscription cut while building is built again
            self._subscribe()
            if not self._built:
                await self._build()
            self._catch_up()
            if self._built:
                break
        seq = self.s.bus.seq
        # Read what is stale (a section whose read failed stays stale).
        stale, self._stale = self._stale, set()
        try:
            for section in DB_SECTIONS:
                if section in stale:
                    self._sections[section] = encode(await self._read(section))
                    stale.discard(section)
        finally:
            self._stale |= stale
        if self._usage_stale or time.monotonic() - self._usage.read_at > USAGE_MAX_AGE:
            report = await self.s.usage.report(None, None, hourly=True)
            self._usage_stale = False
            self._usage.rows = [dump(u) for u in report.usage]
            self._usage.hourly = [dump(h) for h in report.hourly]
            self._usage.read_at = time.monotonic()
            self._usage.text = None
        return seq

    async def _read(self, section: str) -> list[dict[str, Any]]:
        s = self.s
        items = None if s.federation is None else s.federation.items
        if section == "approvals":  # the other hosts' open ones too, with their host
            remote = [] if items is None else items.remote_approvals()
            return [dump(a) for a in [*await s.approvals.pending(), *remote]]
        if section == "questions":
            remote_q = [] if items is None else items.remote_questions()
            return [dump(q) for q in [*await s.questions.pending(operator_only=True), *remote_q]]
        mine = [dump(m) for m in await s.broker.operator_recent(limit=INBOX_PAGE)]
        inboxes = {} if items is None else items.inboxes
        return mine + [{**dump(m), "host": h} for h, box in inboxes.items() for m in box.recent]

    def _encode(self, seq: int) -> str:
        s = self.s
        if self._usage.text is None:
            self._usage.text = encode({"usage": self._usage.rows, "hourly": self._usage.hourly})
        usage = f'{{"ok":true,"result":"usage","now":{encode(s.clock.now())},{self._usage.text[1:]}'
        parts = {
            "seq": str(seq),
            "version": encode(__version__),
            "backend": encode(s.settings.backend),
            "agents": encode(self._agent_rows()),
            "approvals": self._sections["approvals"],
            "questions": self._sections["questions"],
            "transients": encode(list(s.transients.active.values())),
            "inbox": self._sections["inbox"],
            "messages": self._flow.encoded(),
            "more_messages": encode(self._flow.more),
            "attention": self._attention,
            "usage": usage,
            "notify": encode([dump(t) for t in s.notifier.status()]),
            "hosts": self._hosts,
        }
        return "{" + ",".join(f'"{k}":{v}' for k, v in parts.items()) + "}"

    def _agent_rows(self) -> list[dict[str, Any]]:
        """Every row, registered agents first (the manager, then by name), then tombstones
        and prepared ones; a running agent's uptime as of now."""
        rows = []
        wall = time.time()
        for row in self._agents.values():
            data = row.dumped()
            if data["uptime_seconds"] is not None:
                status = self.s.backend.status(data["name"])
                if status.running and status.pid == data["pid"] and status.started_at is not None:
                    data = {**data, "uptime_seconds": max(0.0, wall - status.started_at)}
            rows.append(data)
        rows.sort(key=lambda r: (r["state"] in TOMB_STATES, r["role"] != "manager", r["name"]))
        return rows

    # -- building it -----------------------------------------------------------------------

    def _subscribe(self) -> Subscription:
        """The subscription; a new one (and a build to come) when the last one was cut."""
        if self._sub is not None and not self._sub.overflowed:
            return self._sub
        if self._sub is not None:
            self._sub.close()
        self._sub = self.s.bus.subscribe(QUEUE)
        self._held = []
        self._built = False
        return self._sub

    def _catch_up(self) -> None:
        """Apply every event queued; when some were lost (the subscription was cut), build
        anew at the next fetch instead."""
        assert self._sub is not None
        frames = [*self._held, *self._sub.ready()]
        self._held = []
        if self._sub.overflowed:
            self._built = False
        if self._built:
            self._apply(f.event for f in frames)

    async def _build(self) -> None:
        """Read everything, after subscribing: each event from here on is applied after."""
        s = self.s
        agents_dir = s.settings.agents_dir

        def dirs() -> list[tuple[str, bool]]:
            names = agent_dirs.list_dirs(agents_dir)
            return [(n, agent_dirs.is_prepared(agents_dir, n)) for n in names]

        flow, more = await s.broker.flow(FLOW_PAGE)
        attention = await s.attention.compute() if s.attention is not None else []
        found = await anyio.to_thread.run_sync(dirs)
        records = s.registry.all()
        self._agents = {r.name: _Row(agent_info.info(s, r)) for r in records}
        for name, prepared in found:
            if name not in self._agents:
                state: AgentState = "prepared" if prepared else "tombstone"
                self._agents[name] = _Row(AgentInfo(name=name, role="agent", state=state))
        if s.federation is not None:  # the other hosts' agents, as the directory shows them
            for remote in s.federation.remote_agents():
                self._agents.setdefault(remote.name, _Row(remote))
            self._hosts = _hosts_text(s.federation.link.state, await s.federation.hosts())
        self._flow.reset(s, flow, more)
        self._attention = encode([dump(i) for i in attention])
        self._stale.update(DB_SECTIONS)
        self._usage_stale = True
        self._built = True

    # -- following the bus -----------------------------------------------------------------

    def _apply(self, evs: Iterable[events.DashboardEvent]) -> None:
        for ev in evs:
            if isinstance(ev, events.ContainerStateChanged | events.ContainerRemoved):
                self._agent_changed(ev)
            elif isinstance(ev, events.HostsChanged):
                self._hosts = _hosts_text(ev.link, ev.hosts)
            elif isinstance(ev, events.Sent | events.Leased | events.Released | events.Delivered):
                self._message_changed(ev)
            elif isinstance(ev, events.ApprovalAdded | events.ApprovalStarted):
                self._stale.add("approvals")
            elif isinstance(ev, events.ApprovalResolved):
                self._stale.add("approvals")
                self._usage_stale = True  # a budget's grant
            elif isinstance(ev, events.QuestionAdded | events.QuestionResolved):
                self._stale.add("questions")
            elif isinstance(ev, events.RemoteInbox):
                self._stale.add("inbox")
            elif isinstance(ev, events.AttentionChanged):
                self._attention = encode([dump(i) for i in ev.items])
            elif isinstance(ev, events.UsageChanged):
                self._usage.changed(ev)

    def _agent_changed(self, ev: events.ContainerStateChanged | events.ContainerRemoved) -> None:
        if isinstance(ev, events.ContainerRemoved):
            self._agents.pop(ev.name, None)
            self._usage_stale = True
            return
        known = self._agents.get(ev.agent.name)
        if known is None or known.info.deployed_commit != ev.agent.deployed_commit:
            self._usage_stale = True  # a new row, or other limits
        self._agents[ev.agent.name] = _Row(ev.agent)

    def _message_changed(
        self, ev: events.Sent | events.Leased | events.Released | events.Delivered
    ) -> None:
        if isinstance(ev, events.Sent):
            self._flow.sent(ev.message)
            if ev.message.recipient == OPERATOR:
                self._stale.add("inbox")
        elif isinstance(ev, events.Leased):
            self._flow.mark(ev.ids, "leased")
        elif isinstance(ev, events.Released):
            self._flow.mark(ev.ids, "queued")
        else:
            self._flow.mark(ev.ids, "delivered", ev.delivered_at)
            if ev.recipient == OPERATOR:
                self._stale.add("inbox")

    async def follow(self) -> None:
        """Apply events as they are published (a task of the dashboard's)."""
        try:
            while True:
                sub = self._subscribe()
                first = await sub.get()
                if sub is not self._sub:  # a fetch found it cut and replaced it
                    continue
                # Taken off the queue: the next catch-up, this one's or a fetch's, has it.
                self._held.append(first)
                async with self._lock:
                    if sub is self._sub:
                        self._catch_up()
        finally:
            self.close()

    def close(self) -> None:
        """Leave the bus (`follow` does when it ends)."""
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._built = False

    # -- pinging the harnesses off the request path ----------------------------------------

    async def probe(self) -> None:
        """After a fetch, at most every `PROBE_INTERVAL`: ping every running harness (a task
        of the dashboard's)."""
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            await self.ping_all()
            await anyio.sleep(PROBE_INTERVAL)

    async def ping_all(self) -> None:
        """Ping every running harness; publish each row whose `alive` the answer contradicts,
        unless the row changed meanwhile (its harness said something: it is newer)."""
        s = self.s
        async with self._lock:
            self._catch_up()
            if not self._built:
                return
            rows = dict(self._agents)
        answers: dict[str, bool] = {}

        async def one(name: str) -> None:
            answers[name] = await ping(s.settings.harness_socket(name))

        async with anyio.create_task_group() as tg:
            for name, row in rows.items():
                if row.info.state == "running" and s.backend.status(name).running:
                    tg.start_soon(one, name)
        async with self._lock:
            self._catch_up()
            for name, answered in answers.items():
                now = self._agents.get(name)
                record = s.registry.find(name)
                if now is not rows[name] or record is None or answered == rows[name].info.alive:
                    continue
                if s.backend.status(name).pid == rows[name].info.pid:
                    changed = agent_info.info(s, record, answered)
                    s.bus.publish(events.ContainerStateChanged(agent=changed))


def _hosts_text(link: LinkState | None, hosts: list[HostInfo]) -> str:
    """`/api/state`'s `hosts`: whether the hive spans hosts, this host's link, the hosts."""
    if link is None:
        return '{"federated":false,"link":null,"hosts":[]}'
    return encode({"federated": True, "link": link, "hosts": [dump(h) for h in hosts]})
