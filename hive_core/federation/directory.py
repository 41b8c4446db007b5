"""Who runs where, across the hive's hosts: three JetStream key-value buckets.

- `names`: agent name → the host holding it. A spawn claims its name with a create, which
  only one host can win; a destroy releases it. A name claimed by another host is refused
  with that host named.
- `agents`: `<host>.<name>` → the agent's entry (role, state, page port, shared config).
  Each host writes only keys under its own id (NATS permissions hold it to that); a reader
  takes an entry only when its key's host, its `host` field and its name agree.
- `hosts`: `<host>` → its heartbeat (dashboard URL, capacity, agents, version, time).

Both watches write what they see into `RemoteView`, which the broker and `list` read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import nats.errors
import nats.js.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from hive_core import __version__
from hive_core.errors import AlreadyExists, HiveError, Unreachable
from hive_core.federation import names
from hive_core.federation.link import Link
from hive_core.federation.names import AgentEntry, ConfigRef, HostEntry
from hive_core.federation.view import RemoteView
from hive_core.services import Services
from hive_share.models import AgentInfo

logger = logging.getLogger(__name__)

HEARTBEAT = 10.0
"""Seconds between two heartbeats of this host."""
WATCH_RETRY = 2.0
"""Seconds before a watch that ended (the link went) is started again."""

Apply = Callable[[str, bytes | None, str | None], Awaitable[None]]
"""What a watch does with one entry: its key, value (None when deleted) and operation."""


class Directory:
    def __init__(
        self,
        s: Services,
        link: Link,
        view: RemoteView,
        on_host_seen: Callable[[], None] | None = None,
    ) -> None:
        self._s = s
        self._link = link
        self._view = view
        self._on_host_seen = on_host_seen
        """Called after each heartbeat of another host."""
        self.config_of: Callable[[str], ConfigRef | None] = lambda name: None
        """This host's agent's config as shared (`Configs.ref`)."""
        self.on_agent: Callable[[AgentEntry], None] = lambda entry: None
        """Called with each entry of another host's agent taken (`Configs.seen`)."""

    @property
    def _host(self) -> str:
        return self._link.host

    def _kv(self, bucket: str) -> KeyValue:
        if self._link.state != "up":
            raise Unreachable(
                f"the hive's directory is out of reach (NATS link {self._link.state}); "
                "try again once `hive-core hosts` shows the link up"
            )
        return self._link.kv(bucket)

    # -- names ---------------------------------------------------------------------------

    async def claim(self, name: str) -> None:
        """Hold `name` for this host across the hive.

        Raises:
            AlreadyExists: another host holds it.
            Unreachable: NATS is away (nothing is claimed).
        """
        kv = self._kv(names.names_bucket(self._link.hive))
        try:
            await kv.create(name, self._host.encode())
        except nats.js.errors.KeyWrongLastSequenceError:  # held: by this host, or another
            holder = await self.holder(name)
            if holder is not None and holder != self._host:
                raise AlreadyExists(f"agent {name!r} already exists on host {holder}") from None
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unreachable(f"could not claim the name {name!r} across the hive: {exc}") from exc

    async def holder(self, name: str) -> str | None:
        """The host holding `name`, or None.

        Raises:
            Unreachable: NATS is away.
        """
        kv = self._kv(names.names_bucket(self._link.hive))
        try:
            entry = await kv.get(name)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unreachable(f"could not look up {name!r} across the hive: {exc}") from exc
        return None if entry.value is None else entry.value.decode(errors="replace")

    async def release(self, name: str) -> None:
        """Give `name` back (this host's claim only); NATS away: left for the next start."""
        try:
            kv = self._kv(names.names_bucket(self._link.hive))
            entry = await kv.get(name)
            if entry.value == self._host.encode():
                await kv.delete(name, last=entry.revision)
            await self._kv(names.agents_bucket(self._link.hive)).delete(f"{self._host}.{name}")
        except (HiveError, nats.errors.Error, TimeoutError) as exc:
            logger.warning("could not release the name %r across the hive: %s", name, exc)

    # -- this host's agents ----------------------------------------------------------------

    async def publish(self, agent: AgentInfo) -> None:
        entry = AgentEntry(
            name=agent.name,
            host=self._host,
            role=agent.role,
            state=agent.state,
            web_port=agent.web_port,
            config=self.config_of(agent.name),
        )
        kv = self._kv(names.agents_bucket(self._link.hive))
        await kv.put(f"{self._host}.{agent.name}", entry.model_dump_json().encode())

    async def heartbeat(self) -> None:
        entry = HostEntry(
            host=self._host,
            dashboard_url=self._s.settings.public_url or self._s.dashboard_url,
            capacity=self._s.settings.host_capacity,
            agents=len(self._s.registry.all()),
            version=__version__,
            seen_at=self._s.clock.now(),
        )
        kv = self._kv(names.hosts_bucket(self._link.hive))
        await kv.put(self._host, entry.model_dump_json().encode())

    # -- the others ------------------------------------------------------------------------

    async def watch_agents(self) -> None:
        """Follow every host's agent entries into the view, until cancelled."""
        await self._watch(names.agents_bucket(self._link.hive), self._on_agent)

    async def watch_hosts(self) -> None:
        await self._watch(names.hosts_bucket(self._link.hive), self._on_host)

    async def _watch(self, bucket: str, apply: Apply) -> None:
        last_error = None
        while True:
            await self._link.up()
            try:
                watcher = await self._link.kv(bucket).watchall()
                try:
                    async for entry in watcher:
                        if entry is not None:
                            await apply(entry.key, entry.value, entry.operation)
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except (nats.errors.Error, TimeoutError) as exc:
                level = logging.DEBUG if str(exc) == last_error else logging.WARNING
                logger.log(level, "the watch of %s ended: %s", bucket, exc)
                last_error = str(exc)
            await anyio.sleep(WATCH_RETRY)

    async def _on_agent(self, key: str, value: bytes | None, op: str | None) -> None:
        host, _, name = key.partition(".")
        if host == self._host:
            return
        if op in (KV_DEL, KV_PURGE) or value is None:
            await self._view.drop_agent(name, host)
            return
        entry = _taken(key, value)
        if entry is not None:
            await self._view.put_agent(entry)
            self.on_agent(entry)

    async def entry(self, host: str, name: str) -> AgentEntry | None:
        """Another host's agent's entry as the directory holds it now (None: none, or one
        refused).

        Raises:
            Unreachable: NATS is away.
        """
        key = f"{host}.{name}"
        try:
            got = await self._kv(names.agents_bucket(self._link.hive)).get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unreachable(f"could not look up {key} in the hive's directory: {exc}") from exc
        return None if got.value is None else _taken(key, got.value)

    async def _on_host(self, key: str, value: bytes | None, op: str | None) -> None:
        if key == self._host or op in (KV_DEL, KV_PURGE) or value is None:
            return
        try:
            entry = HostEntry.model_validate_json(value)
        except ValidationError as exc:
            logger.error("refused the host entry %s: %s", key, exc.errors()[0]["msg"])
            return
        if entry.host != key:
            logger.error("refused the host entry %s: it names host %s", key, entry.host)
            return
        await self._view.put_host(entry, self._s.clock.now())
        if self._on_host_seen is not None:
            self._on_host_seen()


def _taken(key: str, value: bytes) -> AgentEntry | None:
    """The entry under `key`, when it is valid and names the key's host and agent."""
    host, _, name = key.partition(".")
    try:
        entry = AgentEntry.model_validate_json(value)
    except ValidationError as exc:
        logger.error("refused the directory entry %s: %s", key, exc.errors()[0]["msg"])
        return None
    if entry.host != host or entry.name != name:
        logger.error(
            "refused the directory entry %s: it names %s on host %s", key, entry.name, entry.host
        )
        return None
    return entry
