"""What this host knows of the others: their agents and heartbeats, kept in hive.sqlite.

The directory's watches write here as entries arrive; the broker asks `host_of` on every
send, so a send to another host's agent is accepted (and queued) while NATS is away, across
restarts too. No NATS import: the daemon loads this before the link is up.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.federation.names import AgentEntry, HostEntry
from hive_share import events
from hive_share.models import AgentInfo


@dataclass(frozen=True)
class HostSeen:
    entry: HostEntry
    seen_at: float
    """When this host received the entry, by its own clock."""


class RemoteView:
    """Every other host's agents and heartbeats, as last seen."""

    def __init__(self, db: Database, bus: EventBus, host: str) -> None:
        self._db = db
        self._bus = bus
        self.host = host
        self.agents: dict[str, AgentEntry] = {}
        self.hosts: dict[str, HostSeen] = {}

    async def load(self) -> None:
        def read(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
            agents = conn.execute("SELECT entry FROM remote_agents").fetchall()
            hosts = conn.execute("SELECT entry, seen_at FROM remote_hosts").fetchall()
            return agents, hosts

        agents, hosts = await self._db.read(read)
        for row in agents:
            entry = AgentEntry.model_validate_json(row["entry"])
            self.agents[entry.name] = entry
        for row in hosts:
            seen = HostEntry.model_validate_json(row["entry"])
            self.hosts[seen.host] = HostSeen(seen, float(row["seen_at"]))

    def info(self, entry: AgentEntry) -> AgentInfo:
        """Another host's agent as a `list` row."""
        return AgentInfo(
            name=entry.name,
            role=entry.role,
            state=entry.state,
            web_port=entry.web_port,
            host=entry.host,
            deployed_commit=None if entry.config is None else entry.config.commit,
        )

    def host_of(self, name: str) -> str | None:
        """The other host that runs agent `name`; None when no other host does."""
        entry = self.agents.get(name)
        return None if entry is None else entry.host

    async def put_agent(self, entry: AgentEntry) -> None:
        if self.agents.get(entry.name) == entry:
            return
        self.agents[entry.name] = entry
        text = entry.model_dump_json()
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO remote_agents (name, host, entry) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET host = excluded.host, entry = excluded.entry",
                (entry.name, entry.host, text),
            ),
            one_statement=True,
        )
        self._bus.publish(events.ContainerStateChanged(agent=self.info(entry)))

    async def drop_agent(self, name: str, host: str) -> None:
        """`host` no longer runs `name` (a later entry from another host stands)."""
        entry = self.agents.get(name)
        if entry is None or entry.host != host:
            return
        del self.agents[name]
        await self._db.write(
            lambda c: c.execute(
                "DELETE FROM remote_agents WHERE name = ? AND host = ?", (name, host)
            ),
            one_statement=True,
        )
        self._bus.publish(events.ContainerRemoved(name=name))

    async def put_host(self, entry: HostEntry, now: float) -> None:
        """Note a heartbeat."""
        self.hosts[entry.host] = HostSeen(entry, now)
        text = entry.model_dump_json()
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO remote_hosts (host, entry, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (host) DO UPDATE SET entry = excluded.entry, "
                "seen_at = excluded.seen_at",
                (entry.host, text, now),
            ),
            one_statement=True,
        )
