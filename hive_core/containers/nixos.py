"""The `nixos` backend: each agent runs in its own `nixos-container` named `h-<name>`,
built from the core-owned meta flake (`meta#<name>`, see `hive_core/meta.py`).

The container's harness is the `hive-agent` systemd unit inside it; its pid (as the
container sees it, which is the pid the harness reports in `alive`) comes from
`systemctl show` run in the container. `status()` answers from a cache that the
backend's `run()` loop refreshes every few seconds and every lifecycle
call updates (`HIVE_NIXOS_STATUS_INTERVAL`). The harness's log is the container's journal.

A container is created (or updated) from meta when it starts: `start` is where a stale
container is brought to what meta says (`rebuild` alone recovers an agent). Which meta
state each container was last built from is kept in `<state>/nixos-containers.json`.
What each container sees of the host (its conf file's bind mounts, the manager's live
binds) is `nixos_binds.py`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from hive_core import meta as meta_mod
from hive_core.containers import nixtools
from hive_core.containers.backend import AgentSpec, ContainerStatus
from hive_core.containers.logfile import CHUNK, Tail
from hive_core.containers.nixos_binds import Binds, container
from hive_core.containers.nixtools import Tools
from hive_core.errors import BackendError
from hive_core.meta import Meta, MetaAgent, Params
from hive_core.settings import Settings
from hive_share.names import MANAGER_NAME

logger = logging.getLogger(__name__)

UNIT = "hive-agent.service"
CALL_TIMEOUT = 60.0
"""Seconds a quick `nixos-container` call (list, status, start, stop, run) may take."""
STOP_TIMEOUT = 120.0
PID_WAIT = 30.0
"""Seconds a started container's harness unit has to get a main pid."""
PID_POLL = 0.5
JOURNAL_TIMEOUT = 15.0
CONTAINERS_ROOT = Path("/var/lib/nixos-containers")
"""Where `nixos-container` keeps each container's root (its journal files too)."""

Roster = Callable[[], list[MetaAgent]]
"""Every registered agent as the meta flake renders it."""
ParamsOf = Callable[[], Params]


class NixosBackend:
    def __init__(self, settings: Settings, tools: Tools, roster: Roster, params: ParamsOf) -> None:
        self._settings = settings
        self._tools = tools
        self._roster = roster
        self._params = params
        self.meta = Meta(settings, tools)
        self._record = settings.state_dir / "nixos-containers.json"
        self._status: dict[str, ContainerStatus] = {}
        self._contacted: set[str] = set()
        """Agents this daemon started or restarted: an up container outside it was left by
        an earlier daemon, and its harness must be restarted to report to this one."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._binds = Binds(settings, tools)

    # --- the tools ---------------------------------------------------------------------

    async def _nc(self, *args: str, limit: float = CALL_TIMEOUT, check: bool = True) -> bytes:
        argv = [self._tools.nixos_container, *args]
        return (await nixtools.run(argv, self._tools.env, limit, check=check)).out

    async def _exists(self, name: str) -> bool:
        out = await self._nc("list")
        return container(name) in out.decode(errors="replace").split()

    async def _up(self, name: str) -> bool:
        got = await nixtools.run([self._tools.nixos_container, "status", container(name)],
                                 self._tools.env, CALL_TIMEOUT, check=False)  # fmt: skip
        return got.code == 0 and got.out.decode(errors="replace").strip() == "up"

    async def _main_pid(self, name: str) -> int | None:
        out = await self._nc("run", container(name), "--", "systemctl", "show",
                             "--property=MainPID", "--value", UNIT)  # fmt: skip
        try:
            pid = int(out.decode(errors="replace").strip() or "0")
        except ValueError:
            raise BackendError(f"{container(name)} gave no pid for {UNIT}: {out[:200]!r}") from None
        return pid if pid > 0 else None

    # --- the record of what each container was built from -----------------------------

    def _built(self) -> dict[str, str]:
        try:
            data = json.loads(self._record.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            logger.warning("%s is not JSON; every container counts as stale", self._record)
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    def _set_built(self, name: str, value: str | None) -> None:
        built = self._built()
        if value is None:
            built.pop(name, None)
        else:
            built[name] = value
        tmp = self._record.with_suffix(".tmp")
        tmp.write_text(json.dumps(built, sort_keys=True, indent=1) + "\n", encoding="utf-8")
        tmp.replace(self._record)

    async def _wanted(self, name: str) -> str:
        """The fingerprint of what meta's HEAD says `name` runs."""
        agent = next((a for a in self._roster() if a.name == name), None)
        if agent is None:
            raise BackendError(f"{name} is not registered")
        return meta_mod.fingerprint(agent, self._params(), await self.meta.lock_text())

    # --- life in the daemon -----------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def open(self) -> None:
        """Open the meta repo (clearing what a crash left) and register every agent.
        Raises: BackendError."""
        await self.meta.open()
        await self.sync_meta("sync with the agents at start-up")

    async def sync_meta(self, message: str) -> bool:
        """Re-render meta from the registered agents; commit when it changed."""
        return await self.meta.sync(self._roster(), self._params(), message)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Refresh the status cache every `nixos_status_interval`, until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(self._settings.nixos_status_interval)
            try:
                await self.refresh()
            except BackendError as exc:
                logger.warning("could not read the containers' states: %s", exc.message)

    async def refresh(self) -> None:
        """Read every registered agent's container state into the cache."""
        names = [a.name for a in self._roster()]
        listed = set((await self._nc("list")).decode(errors="replace").split())
        for name in names:
            if self._lock(name).locked():
                continue  # a lifecycle call is under way and sets the state itself
            await self._read_status(name, container(name) in listed)
        await self.share_with_manager()

    async def _read_status(self, name: str, exists: bool) -> ContainerStatus:
        before = self._status.get(name)
        if not exists or not await self._up(name):
            status = ContainerStatus(running=False)
        else:
            pid = await self._main_pid(name)
            started = before.started_at if before and before.running else time.time()
            status = ContainerStatus(running=True, pid=pid, started_at=started)
        self._status[name] = status
        return status

    def status(self, name: str) -> ContainerStatus:
        return self._status.get(name, ContainerStatus(running=False))

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, spec: AgentSpec) -> ContainerStatus:
        async with self._lock(spec.name):
            name = spec.name
            await self.sync_meta(f"sync with the agents at the start of {name}")
            wanted = await self._wanted(name)
            fresh = False
            if not await self._exists(name):
                await self._nc("create", container(name), "--flake", f"{self.meta.flake}#{name}",
                               limit=self._settings.nix_build_timeout)  # fmt: skip
                self._set_built(name, wanted)
                fresh = True
            elif self._built().get(name) != wanted:
                await self._update(name, wanted)
            if not await self._up(name):
                await anyio.to_thread.run_sync(self._binds.write, spec)
                await self._nc("start", container(name), limit=STOP_TIMEOUT)
            elif name not in self._contacted and not fresh:
                # Left running by an earlier hive-core: its harness reported to that one.
                await self._nc("run", container(name), "--", "systemctl", "restart", UNIT)
            self._contacted.add(name)
            pid = await self._wait_pid(name)
            status = ContainerStatus(running=True, pid=pid, started_at=time.time())
            self._status[name] = status
            logger.info("started %s (harness pid %d in the container)", container(name), pid)
        if spec.role != "manager":  # a new agent's repos reach a running manager at once
            await self.share_with_manager()
        return status

    async def _update(self, name: str, wanted: str) -> None:
        await self._nc("update", container(name), "--flake", f"{self.meta.flake}#{name}",
                       limit=self._settings.nix_build_timeout)  # fmt: skip
        self._set_built(name, wanted)

    async def _wait_pid(self, name: str) -> int:
        deadline = time.monotonic() + PID_WAIT
        while True:
            pid = await self._main_pid(name)
            if pid is not None:
                return pid
            if time.monotonic() > deadline:
                raise BackendError(
                    f"{UNIT} did not start in {container(name)} within {PID_WAIT:.0f}s"
                )
            await anyio.sleep(PID_POLL)

    async def share_with_manager(self) -> list[str]:
        """Bind into the running manager's container what it lacks: the config repos that
        appeared since it started (an agent spawned or prepared meanwhile), or `/meta` for a
        container started before it was bound. `machinectl bind` adds a bind mount to a
        running nspawn container, and the conf line records it, so the manager sees them
        without a restart. Returns the groups bound (agent names, `meta`).

        Never raises: a failure is logged, retried at the next call (the status refresh),
        and the manager's next start binds everything anyway. Skipped while the manager's
        own lifecycle call runs (its start writes the binds).
        """
        lock = self._lock(MANAGER_NAME)
        if lock.locked() or not self.status(MANAGER_NAME).running:
            return []
        async with lock:
            return await self._binds.share_with_manager()

    async def stop(self, name: str) -> None:
        async with self._lock(name):
            await self._stop(name)

    async def kill(self, name: str) -> None:
        """A container has no SIGKILL of its own: `nixos-container stop` (systemd kills
        what does not stop within its bound)."""
        await self.stop(name)

    async def _stop(self, name: str) -> None:
        if self.status(name).running or await self._up(name):
            await self._nc("stop", container(name), limit=STOP_TIMEOUT)
        self._status[name] = ContainerStatus(running=False)

    async def shutdown(self) -> None:
        """Containers outlive hive-core: they keep running, and the next start restarts
        each harness so that it reports to the new daemon."""

    async def destroy(self, name: str) -> None:
        async with self._lock(name):
            if await self._exists(name):
                await self._stop(name)
                await self._nc("destroy", container(name), limit=STOP_TIMEOUT)
            self._status.pop(name, None)
            self._contacted.discard(name)
            self._set_built(name, None)
        await self.sync_meta(f"remove {name}")

    # --- deploys ----------------------------------------------------------------------

    async def build(self, spec: AgentSpec, commit: str) -> None:
        await self.meta.build(self._roster(), self._params(), spec.name, commit)

    async def finalize(self, spec: AgentSpec) -> None:
        async with self._lock(spec.name):
            name = spec.name
            await self.sync_meta(f"deploy {self._commit_of(name)[:12]} to {name}")
            if await self._exists(name):
                await self._update(name, await self._wanted(name))

    def _commit_of(self, name: str) -> str:
        agent = next((a for a in self._roster() if a.name == name), None)
        return (agent.commit if agent else None) or "main"

    async def update_hyperhive(self) -> list[str]:
        """Move meta's `hyperhive` input to its newest revision; returns the agents whose
        containers are now stale (their next start rebuilds them). Raises: BackendError."""
        await self.meta.lock_update()
        built = self._built()
        stale = []
        for agent in self._roster():
            if built.get(agent.name) != await self._wanted(agent.name):
                stale.append(agent.name)
        return stale

    async def lock_news(self, running: str) -> str | None:
        """Why meta's locked `hyperhive` input is stale: its source holds other code than
        hive-core runs (`running`, a source digest); None when it holds the same, or when
        that cannot be told (see `meta.lock_news`)."""
        lock = await self.meta.lock_text()
        return await anyio.to_thread.run_sync(meta_mod.lock_news, lock, running)

    async def preflight(self, agents: list[MetaAgent]) -> None:
        """Check that meta renders for `agents` and parses. Raises: BackendError."""
        await self.meta.parse(agents, self._params())

    async def migrate(self) -> list[str]:
        """Once per state dir (marker in meta): move every existing container onto meta.
        Returns the agents moved. Raises: BackendError."""
        if self.meta.migrated():
            return []
        moved = []
        for agent in self._roster():
            wanted = await self._wanted(agent.name)
            if await self._exists(agent.name) and self._built().get(agent.name) != wanted:
                await self._update(agent.name, wanted)
                moved.append(agent.name)
        self.meta.mark_migrated()
        return moved

    # --- logs -------------------------------------------------------------------------

    async def _journal(self, name: str, *args: str) -> bytes:
        """The harness unit's entries, from the running container (`-M`), else from the
        journal files it left on the host (`-D`: a stopped or crashed agent)."""
        common = ["-u", UNIT, "--no-pager", "-o", "json", *args]
        live = [self._tools.journalctl, "-M", container(name), *common]
        got = await nixtools.run(live, self._tools.env, JOURNAL_TIMEOUT, check=False)
        if got.code == 0:
            return got.out
        files = CONTAINERS_ROOT / container(name) / "var" / "log" / "journal"
        stored = [self._tools.journalctl, "-D", str(files), *common]
        return (await nixtools.run(stored, self._tools.env, JOURNAL_TIMEOUT)).out

    async def log_tail(self, spec: AgentSpec, lines: int) -> Tail:
        entries = parse_journal(await self._journal(spec.name, "-n", str(lines)))
        offset = entries[-1][0] if entries else 0
        return Tail([text for _, text in entries][-lines:], len(entries) >= lines, offset)

    async def log_read(self, spec: AgentSpec, offset: int) -> tuple[bytes, int]:
        since = f"@{offset // 1_000_000}"
        data, end = b"", offset
        for stamp, text in parse_journal(await self._journal(spec.name, "--since", since)):
            if stamp <= offset:
                continue
            line = (text + "\n").encode()
            if data and len(data) + len(line) > CHUNK:
                break
            data, end = data + line, stamp
        return data, end


def parse_journal(out: bytes) -> list[tuple[int, str]]:
    """`journalctl -o json` lines as (realtime in µs, "<UTC time> <message>")."""
    entries = []
    unreadable = 0
    for raw in out.splitlines():
        try:
            entry = json.loads(raw)
            stamp = int(entry["__REALTIME_TIMESTAMP"])
            message = entry.get("MESSAGE")
            if isinstance(message, list):  # not UTF-8: journald gives the bytes
                message = bytes(message).decode("utf-8", errors="replace")
            elif not isinstance(message, str):
                message = ""
            when = datetime.fromtimestamp(stamp / 1e6, UTC).isoformat(timespec="seconds")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, OSError):
            unreadable += 1
            continue
        entries.append((stamp, f"{when} {message}"))
    if unreadable:
        logger.warning("skipped %d journal lines that were not journal entries", unreadable)
    return entries
