"""`hive-core serve`: wires the services, owns the one task group, starts and drains."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import stat
import sys
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from hive_core import (
    __version__,
    actions,
    agent_dirs,
    config_repos,
    deploys,
    events_vacuum,
    git,
    meta,
    supervision,
)
from hive_core.approvals import Approvals
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.clock import Clock, SystemClock
from hive_core.containers.backend import ContainerBackend
from hive_core.containers.local import LocalBackend
from hive_core.containers.nixos import NixosBackend
from hive_core.containers.nixtools import Tools
from hive_core.crash_watch import CrashWatch
from hive_core.db import Database
from hive_core.errors import HiveError, ShuttingDown, StartupError
from hive_core.liveness import Liveness
from hive_core.questions import Questions
from hive_core.registry import Registry
from hive_core.reminders import Reminders
from hive_core.sdnotify import Notifier, watchdog_interval
from hive_core.services import Services
from hive_core.settings import Settings
from hive_core.sockets import handlers
from hive_core.sockets.agents import AgentSockets
from hive_core.sockets.limits import ConnectionCaps, ConnectionPool, raise_nofile_limit
from hive_core.sockets.server import Conn, Principal, SocketServer, StartupGate
from hive_core.transients import Transients
from hive_share import build, gil
from hive_share import requests as rq
from hive_share.helper import NeedsUpdate
from hive_share.names import MANAGER_NAME, OPERATOR

if TYPE_CHECKING:
    from hive_core.dashboard.server import Dashboard

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 5.0
"""Seconds open requests get to finish at shutdown before they are cut."""
VACUUM_INTERVAL = 3600.0
CHECKPOINT_INTERVAL = 2.0
COORDINATION_TICK = 5.0
"""How often due reminders are delivered and expired questions resolved."""
OPERATOR_CONN = 0
"""The connection id of the dashboard's requests (socket connections count from 1); the
host verbs it uses hold no leases."""
ANSWERED_WHILE_STARTING = frozenset({"version", "ping"})
"""Host verbs answered before start-up is done; every other one waits for it."""
HOST_GATED = rq.HOST_VERBS - ANSWERED_WHILE_STARTING
MANAGER_GATED = rq.MANAGER_VERBS - rq.AGENT_VERBS
"""The manager's lifecycle and approval verbs wait for start-up; what its harness shares
with every agent (`alive`, `recv`, `send`, reports) does not: the restore waits for it."""


async def periodic(interval: float, tick: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `tick` now and then every `interval` seconds; a failing tick is logged, not fatal."""
    while True:
        try:
            await tick()
        except Exception:
            logger.exception("%s failed; will retry in %.0fs", what, interval)
        await asyncio.sleep(interval)


def _make_backend(
    settings: Settings, env: Mapping[str, str], services: list[Services]
) -> ContainerBackend:
    """The backend HIVE_BACKEND names. Raises: StartupError (nixos: a tool or
    HIVE_HYPERHIVE_FLAKE is missing)."""
    if settings.backend == "nixos":
        if not settings.hyperhive_flake.strip():
            raise StartupError(
                "HIVE_BACKEND=nixos needs HIVE_HYPERHIVE_FLAKE: the flake reference of "
                "hyperhive (e.g. github:owner/hyperhive or path:/etc/hyperhive)"
            )
        try:
            tools = Tools.resolve(settings, env)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        return NixosBackend(
            settings,
            tools,
            roster=lambda: meta.roster(services[0]),
            params=lambda: meta.params_of(settings, services[0].dashboard_url),
        )

    def on_exit(name: str, pid: int, code: int, expected: bool) -> None:
        actions.on_exit(services[0], name, pid, code, expected)

    return LocalBackend(env, on_exit)


async def open_nixos(backend: NixosBackend, settings: Settings) -> None:
    """Meta at start-up: clear what a crash left, re-render from the agents (a deploy a
    crash finished, a new hyperhive input), and the one-time migration of a state dir
    that has agents but no meta. Stale containers are rebuilt when they start. Failures
    are logged: spawn and start report them again."""
    try:
        await backend.open()
        if settings.skip_meta_migration:
            return
        moved = await backend.migrate()
        if moved:
            logger.info("moved %s onto the meta flake", ", ".join(moved))
    except HiveError as exc:
        logger.error("the meta flake is not usable: %s", exc.message)


async def tell_stale_lock(s: Services, backend: NixosBackend) -> None:
    """At start-up: when meta's locked `hyperhive` input holds other code than hive-core
    runs, every container built from it would run that code, so the overseer hears
    `needs_update` for each agent (`update` moves the input). Not told when it cannot be
    known (`meta.lock_news`); a failure is logged."""
    try:
        news = await backend.lock_news(await asyncio.to_thread(build.running_digest))
    except HiveError as exc:
        logger.error("could not check meta's hyperhive input: %s", exc.message)
        return
    if news is None:
        return
    logger.warning("%s", news)
    for record in s.registry.all():
        await actions.tell_overseer(s, record.name, NeedsUpdate(agent=record.name, detail=news))


def prepare_private_dir(path: Path) -> None:
    """Create the socket dir, or accept an existing one only if it is ours and private.

    Raises:
        StartupError: someone else owns it, or others may write to it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise StartupError(f"{path} belongs to uid {st.st_uid}, not to us; remove it")
    if st.st_mode & 0o022:
        raise StartupError(
            f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            "chmod 700 it or remove it"
        )


LOCK_WAIT = git.GIT_TIMEOUT + 5.0
"""How long start-up waits for what a previous hive-core left holding `hive.lock` (a git
it ran, which dies with it but may not be gone yet) before it gives up."""


async def lock_state_dir(state_dir: Path, wait: float = LOCK_WAIT) -> int:
    """Hold an exclusive lock on the state dir for the daemon's life, with our pid in it.

    The lock is passed to every git hive-core runs, so it is free only once no git of a
    previous hive-core can still write: what start-up reconciles then stays as it is.

    Raises:
        StartupError: another hive-core uses this state dir, or what held the lock did not
            let go within `wait` seconds.
    """
    path = state_dir / "hive.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _lock_holder(fd)
            if holder is not None and _is_hive_core(holder):
                os.close(fd)
                raise StartupError(
                    f"another hive-core (pid {holder}) is already using {state_dir} "
                    "(it holds hive.lock)"
                ) from None
            if loop.time() >= deadline:
                os.close(fd)
                raise StartupError(
                    f"another hive-core is already using {state_dir}, or a process of a "
                    f"previous one (pid {holder or '?'}) still holds hive.lock after "
                    f"{wait:.0f}s; `fuser -v {path}` names it"
                ) from None
            if not told:
                logger.warning("waiting for what a previous hive-core left running to let "
                               "go of %s", path)  # fmt: skip
                told = True
            await asyncio.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _lock_holder(fd: int) -> int | None:
    """The pid the daemon that took the lock wrote into it."""
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None


def _is_hive_core(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"hive_core" in cmdline or b"hive-core" in cmdline


def _login_line(dashboard: Dashboard, cli: str) -> str:
    # A login code is a credential: on a terminal only, never into a journal or log file.
    if sys.stdout.isatty():
        return f"{dashboard.login_link()}  (one use, 10 minutes; `{cli} login-link` prints another)"
    return f"run `{cli} login-link` for a one-time link"


class Daemon:
    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        clock: Clock | None = None,
        db_checked: Future[None] | None = None,
    ):
        self.settings = settings
        self.env = env
        self.clock = clock or SystemClock()
        self.db_checked = db_checked
        """The database's quick_check, begun before the imports (`db.start_quick_check`)."""
        self.stopping = asyncio.Event()
        self.gate = StartupGate()
        self.notifier = Notifier(env.get("NOTIFY_SOCKET"))
        self._lock: int | None = None
        self._caps = ConnectionCaps.for_limit(1024)
        self._agent_pool = ConnectionPool(self._caps.agents_total)

    def _size_connection_caps(self) -> None:
        nofile = raise_nofile_limit()
        self._caps = caps = ConnectionCaps.for_limit(nofile)
        self._agent_pool = ConnectionPool(caps.agents_total)
        logger.info(
            "descriptor limit %d; connections: host %d, manager %d, each agent %d, "
            "all agents %d", nofile, caps.host, caps.manager, caps.agent, caps.agents_total,
        )  # fmt: skip

    def _servers(self, s: Services) -> list[SocketServer]:
        st = self.settings
        host = SocketServer(
            st.host_socket,
            Principal("operator", OPERATOR),
            rq.HOST_VERBS,
            rq.HOST_REQUEST,
            lambda req, conn: handlers.handle_host(s, req, conn),
            on_close=lambda conn: s.broker.release(conn.id),
            holds_work=lambda conn: s.broker.holds_leases(conn.id),
            max_connections=self._caps.host,
            gate=self.gate,
            gated=HOST_GATED,
        )
        manager = SocketServer(
            st.manager_socket,
            Principal("manager", MANAGER_NAME),
            rq.MANAGER_VERBS,
            rq.MANAGER_REQUEST,
            lambda req, conn: handlers.handle_manager(s, req, conn),
            on_close=lambda conn: s.broker.release(conn.id),
            holds_work=lambda conn: s.broker.holds_leases(conn.id),
            max_connections=self._caps.manager,
            gate=self.gate,
            gated=MANAGER_GATED,
        )
        return [host, manager]

    def _agent_server(self, s: Services, name: str) -> SocketServer:
        return SocketServer(
            self.settings.agent_socket(name),
            Principal("agent", name),
            rq.AGENT_VERBS,
            rq.AGENT_REQUEST,
            lambda req, conn: handlers.handle_agent(s, req, conn),
            on_close=lambda conn: s.broker.release(conn.id),
            holds_work=lambda conn: s.broker.holds_leases(conn.id),
            max_connections=self._caps.agent,
            pool=self._agent_pool,
        )

    async def _open_services(self) -> Services:
        st = self.settings
        # Everything hive-core (and a local harness) creates is private, whatever the
        # umask it was started with: files 0600, directories 0700.
        os.umask(0o077)
        try:
            st.check_socket_paths()
            st.check_dashboard_hosts()
            git.use(st.git)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        holder: list[Services] = []
        backend = _make_backend(st, self.env, holder)
        st.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        prepare_private_dir(st.run_dir)
        self._size_connection_caps()
        self._lock = await lock_state_dir(st.state_dir)
        git.hold(self._lock)
        db = await Database.open(st.db_path, checked=self.db_checked)
        bus = EventBus()
        registry = Registry(db, self.clock, st.agent_port_base)
        await registry.load()
        broker = Broker(db, bus, self.clock, registry.is_recipient)
        s = Services(
            settings=st,
            clock=self.clock,
            db=db,
            bus=bus,
            registry=registry,
            broker=broker,
            approvals=Approvals(db, bus, self.clock),
            transients=Transients(db, bus, self.clock),
            questions=Questions(db, bus, self.clock, broker),
            reminders=Reminders(db, self.clock, broker, st.agents_dir),
            backend=backend,
            liveness=Liveness(),
            agent_sockets=AgentSockets(lambda name: self._agent_server(holder[0], name)),
        )
        holder.append(s)
        return s

    async def run(self) -> None:
        """Serve until `stopping` is set (SIGTERM/SIGINT), then drain and exit.

        Raises:
            StartupError: the database, a socket or a setting is unusable.
        """
        s = await self._open_services()
        servers = self._servers(s)
        dashboard: Dashboard | None = None
        try:
            for server in servers:
                await server.start()
            as_operator = Conn(id=OPERATOR_CONN, principal=servers[0].principal)
            # The sockets answer while the web stack (a third of the start-up) is imported;
            # what needs the rest of start-up waits at the gate.
            self._step("loading the dashboard")
            web = await gil.import_off_loop("hive_core.dashboard.server")
            dashboard = await web.Dashboard.open(
                s, lambda raw: servers[0].dispatch_raw(raw, as_operator)
            )
            async with asyncio.TaskGroup() as tg:
                pings, status = self._supervise(tg, s)
                s.login_link = dashboard.login_link
                s.dashboard_url = dashboard.url
                self._step("starting the container backend")
                backend_ready = asyncio.Event()
                backend_task = tg.create_task(s.backend.run(backend_ready), name="backend")
                await backend_ready.wait()
                loops = [
                    tg.create_task(
                        periodic(
                            VACUUM_INTERVAL,
                            lambda: s.broker.vacuum(self.clock.now()),
                            "message vacuum",
                        )
                    ),
                    tg.create_task(events_vacuum.run(s), name="history sweep"),
                    tg.create_task(periodic(CHECKPOINT_INTERVAL, s.db.checkpoint, "checkpoint")),
                    tg.create_task(
                        periodic(
                            COORDINATION_TICK,
                            lambda: s.reminders.tick(self.clock.now()),
                            "reminder scheduler",
                        )
                    ),
                    tg.create_task(
                        periodic(
                            COORDINATION_TICK,
                            lambda: s.questions.expire_due(self.clock.now()),
                            "question TTL watchdog",
                        )
                    ),
                ]
                self._step("reconciling interrupted deploys")
                await s.transients.close_dangling()
                agents_dir = self.settings.agents_dir
                names = await asyncio.to_thread(agent_dirs.list_dirs, agents_dir)
                await asyncio.to_thread(config_repos.clear_stale_locks, agents_dir, names)
                interrupted = await deploys.reconcile(s)
                if isinstance(s.backend, NixosBackend):
                    await open_nixos(s.backend, self.settings)
                    await tell_stale_lock(s, s.backend)
                watch = CrashWatch(s, self.clock)
                s.on_unexpected_exit = watch.nudge  # harnesses dying during restore count too
                loops.append(tg.create_task(watch.run(), name="crash-watch"))
                self._step("restoring agents")
                await actions.restore(s)
                await actions.finish_interrupted(s, interrupted)
                self._step("starting the manager")
                try:
                    await actions.ensure_manager(s)
                except HiveError as exc:
                    logger.error("could not start the manager: %s", exc.message)
                # The page reads agents' states and acts: it waits, queued on the bound
                # port, like the requests at the gate.
                dashboard_task = tg.create_task(dashboard.serve(), name="dashboard")
                self.gate.open()
                self._announce(dashboard)
                await self.stopping.wait()
                logger.info("shutting down")
                s.stopping = True
                for task in status:  # its last word is the one below
                    task.cancel()
                self.notifier.send("STOPPING=1", "STATUS=stopping: draining requests and agents")
                await dashboard.stop()
                await self._drain(s, servers)
                try:
                    async with asyncio.timeout(DRAIN_TIMEOUT):
                        await asyncio.shield(dashboard_task)
                except TimeoutError:
                    logger.warning("the dashboard did not stop within %.0fs", DRAIN_TIMEOUT)
                for task in [*loops, *pings, backend_task, dashboard_task]:
                    task.cancel()
        finally:
            for server in servers:
                await server.close(0)
            if dashboard is not None:
                dashboard.close()
            await s.db.close()
            if self._lock is not None:
                os.close(self._lock)
            logger.info("stopped")

    async def _drain(self, s: Services, servers: list[SocketServer]) -> None:
        s.broker.close()  # waiting long-polls answer "shutting down" now
        await asyncio.gather(
            *(srv.close(DRAIN_TIMEOUT) for srv in servers),
            s.agent_sockets.close_all(DRAIN_TIMEOUT),
        )
        await s.backend.shutdown()

    def _announce(self, dashboard: Dashboard) -> None:
        st = self.settings
        print(
            f"hive-core {__version__} is running (backend: {st.backend}, pid {os.getpid()})\n"
            f"  state:     {st.state_dir}\n"
            f"  sockets:   {st.run_dir}  (admin: {st.host_socket})\n"
            f"  manager:   {MANAGER_NAME}\n"
            f"  dashboard: {dashboard.url}\n"
            f"  login:     {_login_line(dashboard, st.cli_name)}\n"
            f"  try, from another shell:  {st.cli_name} spawn alice && {st.cli_name} list",
            flush=True,
        )
        # After the banner, so whoever waits for READY (systemd, the tests) can read it.
        self.notifier.send("READY=1")

    def _supervise(
        self, tg: asyncio.TaskGroup, s: Services
    ) -> tuple[list[asyncio.Task[None]], list[asyncio.Task[None]]]:
        """Under systemd: the watchdog pings (if `WatchdogSec=` asks) and the STATUS= line,
        from the start, so a slow restore of many agents is watched too."""
        if not self.notifier.enabled:
            return [], []
        pings = []
        interval = watchdog_interval(self.env, os.getpid())
        if interval is not None:
            keep_alive = supervision.keep_alive(self.notifier, interval)
            pings.append(tg.create_task(keep_alive, name="watchdog"))
        status = tg.create_task(supervision.report_status(s, self.notifier), name="status")
        return pings, [status]

    def stop(self) -> None:
        """Drain and exit once start-up is done; requests waiting for it are answered
        `shutting_down` now."""
        self.stopping.set()
        self.gate.refuse(
            ShuttingDown(
                "hive-core is stopping before it finished starting; retry after it restarts"
            )
        )

    def _step(self, step: str) -> None:
        """What start-up does now: told to requests that wait at the gate, and to systemd
        (`STATUS=starting: …`, `systemctl status` shows it) once the sockets answer."""
        self.gate.starting(step)
        self.notifier.send(f"STATUS=starting: {step}")

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)


async def serve(
    settings: Settings, env: Mapping[str, str], db_checked: Future[None] | None = None
) -> None:
    daemon = Daemon(settings, env, db_checked=db_checked)
    daemon.install_signal_handlers()
    await daemon.run()


def run_forever(
    settings: Settings, env: Mapping[str, str], db_checked: Future[None] | None = None
) -> None:
    """Run the daemon on uvloop when available."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, env, db_checked))
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings, env, db_checked))
