"""The agents hive-core knows: name, role, desired state, web port and what their overseer
was last told about their login (the `agents` table).

Kept in memory too, so recipient checks on the send path need no query.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio

from hive_core.clock import Clock
from hive_core.db import Database
from hive_core.errors import AlreadyExists, PortCollision, UnknownAgent
from hive_core.ports import PORT_BASE, PORT_RANGE, agent_web_port, next_web_port, unprobed
from hive_share.models import LoginReport, Role
from hive_share.names import OPERATOR

Desired = Literal["running", "stopped"]


@dataclass(frozen=True)
class AgentRecord:
    name: str
    role: Role
    desired: Desired
    web_port: int
    created_at: float
    deployed_commit: str | None = None
    """The config commit the agent runs (`applied/main` when it was last deployed)."""
    login_told: LoginReport | None = None
    """The login state its overseer was last told about; None: nothing yet."""


def _record(row: sqlite3.Row) -> AgentRecord:
    role, desired, told = row["role"], row["desired"], row["login_told"]
    if role not in ("agent", "manager") or desired not in ("running", "stopped"):
        raise ValueError(f"agents row name={row['name']!r} has role={role!r} desired={desired!r}")
    if told not in (None, "logged_in", "needs_login", "claude_missing"):
        raise ValueError(f"agents row name={row['name']!r} has login_told={told!r}")
    return AgentRecord(
        row["name"], role, desired, row["web_port"], row["created_at"], row["deployed_commit"],
        told,
    )  # fmt: skip


class Registry:
    def __init__(self, db: Database, clock: Clock, port_base: int = PORT_BASE) -> None:
        self._db = db
        self._clock = clock
        self._port_base = port_base
        self._agents: dict[str, AgentRecord] = {}
        self._ports = asyncio.Lock()
        """Held from choosing a port to recording it, so two agents never pick the same."""

    async def load(self) -> None:
        rows = await self._db.read(
            lambda c: c.execute("SELECT * FROM agents ORDER BY name").fetchall()
        )
        self._agents = {r["name"]: _record(r) for r in rows}

    def is_recipient(self, name: str) -> bool:
        return name == OPERATOR or name in self._agents

    def get(self, name: str) -> AgentRecord:
        """Raises: UnknownAgent."""
        record = self._agents.get(name)
        if record is None:
            raise UnknownAgent(f"no agent named {name!r}; `hive-core list` shows who exists")
        return record

    def find(self, name: str) -> AgentRecord | None:
        return self._agents.get(name)

    def all(self) -> list[AgentRecord]:
        return sorted(self._agents.values(), key=lambda r: (r.role != "manager", r.name))

    def check_new(self, name: str) -> int:
        """The web port a new agent `name` would get.

        Raises:
            AlreadyExists: the name is taken.
            PortCollision: every web port of the range is taken.
        """
        if name in self._agents:
            raise AlreadyExists(f"agent {name!r} already exists")
        port = agent_web_port(name, self._taken(), self._port_base)
        if port is None:
            raise self._full()
        return port

    def _taken(self) -> set[int]:
        return {other.web_port for other in self._agents.values()}

    def _full(self) -> PortCollision:
        last = self._port_base + PORT_RANGE - 1
        return PortCollision(
            f"every web port from {self._port_base} to {last} is taken; destroy an agent first"
        )

    async def add(
        self, name: str, role: Role, free: Callable[[int], bool] = unprobed
    ) -> AgentRecord:
        """Register an agent with its web port (the first of its probe that no agent holds and
        `free` accepts: a bind probe skips ports other programs hold), kept from now on.

        Raises: AlreadyExists, PortCollision.
        """
        async with self._ports:
            self.check_new(name)
            port = await anyio.to_thread.run_sync(
                agent_web_port, name, self._taken(), self._port_base, free
            )
            if port is None:
                raise self._full()
            record = AgentRecord(name, role, "running", port, self._clock.now())

            def insert(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "INSERT INTO agents (name, role, desired, web_port, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, role, record.desired, port, record.created_at),
                )

            await self._db.write(insert)
            self._agents[name] = record
        return record

    async def move_port(self, name: str, free: Callable[[int], bool]) -> AgentRecord:
        """Move `name` for good off its web port, which another program holds, to the next
        port upwards that no other agent holds and `free` accepts.

        Raises: UnknownAgent, PortCollision.
        """
        async with self._ports:
            record = self.get(name)
            port = await anyio.to_thread.run_sync(
                next_web_port, record.web_port, self._taken(), self._port_base, free
            )
            if port is None:
                raise self._full()
            await self._db.write(
                lambda c: c.execute("UPDATE agents SET web_port = ? WHERE name = ?", (port, name))
            )
            record = dataclasses.replace(self.get(name), web_port=port)
            self._agents[name] = record
        return record

    async def set_desired(self, name: str, desired: Desired) -> None:
        record = self.get(name)
        if record.desired == desired:
            return
        await self._db.write(
            lambda c: c.execute("UPDATE agents SET desired = ? WHERE name = ?", (desired, name))
        )
        self._agents[name] = dataclasses.replace(record, desired=desired)

    async def set_deployed(self, name: str, commit: str) -> None:
        """Record the config commit `name` now runs."""
        record = self.get(name)
        await self._db.write(
            lambda c: c.execute(
                "UPDATE agents SET deployed_commit = ? WHERE name = ?", (commit, name)
            )
        )
        self._agents[name] = dataclasses.replace(record, deployed_commit=commit)

    def tell_login(self, name: str, login: LoginReport) -> Callable[[sqlite3.Connection], None]:
        """Note that `name`'s overseer is now told its login is `login`: in memory at once, so
        a report racing this one decides against it, and on disk by the write returned, to
        run once the overseer is told.

        Raises: UnknownAgent.
        """
        self._agents[name] = dataclasses.replace(self.get(name), login_told=login)

        def store(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE agents SET login_told = ? WHERE name = ?", (login, name))

        return store

    async def remove(self, name: str) -> None:
        await self._db.write(lambda c: c.execute("DELETE FROM agents WHERE name = ?", (name,)))
        self._agents.pop(name, None)
