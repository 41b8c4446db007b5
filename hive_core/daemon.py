"""`hive-core serve`: wires the services, owns the one task group, starts and drains.

Everything the daemon runs for its life is a task of that anyio task group: the host and
manager sockets and the agent sockets (each with its connections in a group of its own),
the container backend, the periodic loops, the crash watch, the attention list, the
watchdog and `STATUS=` line, and the dashboard server. Shutdown is ordered (status first,
then the drain, then the dashboard, bounded), and ends in one cancellation of the group's
scope: when `Daemon.run` returns, no task of it is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from hive_core import (
    __version__,
    agent_dirs,
    agent_info,
    config_repos,
    deploys,
    git,
    housekeeping,
    lifecycle,
    recovery,
    supervision,
)
from hive_core.action_links import ActionLinks
from hive_core.approvals import Approvals
from hive_core.attention import Attention
from hive_core.backend_setup import make_backend, open_nixos, tell_stale_lock
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.clock import Clock, SystemClock
from hive_core.containers.nixos import NixosBackend
from hive_core.crash_watch import CrashWatch
from hive_core.dashboard import auth
from hive_core.db import Database
from hive_core.deployed_config import DeployedConfigs
from hive_core.errors import HiveError, ShuttingDown, StartupError
from hive_core.liveness import Liveness
from hive_core.notify import Notifications, targets_of
from hive_core.questions import Questions
from hive_core.registry import Registry
from hive_core.reminders import Reminders
from hive_core.sdnotify import Notifier, watchdog_interval
from hive_core.services import Services
from hive_core.settings import Settings
from hive_core.sockets import handlers
from hive_core.sockets.agents import AgentSockets
from hive_core.sockets.limits import ConnectionCaps, ConnectionPool, raise_nofile_limit
from hive_core.sockets.server import Conn, Principal, SocketServer
from hive_core.sockets.startup_gate import StartupGate
from hive_core.startup_checks import lock_state_dir, prepare_private_dir
from hive_core.stuck import StuckWatch
from hive_core.transients import Transients
from hive_core.usage import Usage
from hive_share import gil
from hive_share import requests as rq
from hive_share.base import WireModel
from hive_share.names import MANAGER_NAME, OPERATOR

if TYPE_CHECKING:
    from hive_core.dashboard.server import Dashboard

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 5.0
"""Seconds open requests get to finish at shutdown before they are cut."""
OPERATOR_CONN = 0
"""The connection id of the dashboard's requests (socket connections count from 1); the
host verbs it uses hold no leases."""
ANSWERED_WHILE_STARTING = frozenset({"version", "ping"})
"""Host verbs answered before start-up is done; every other one waits for it."""
HOST_GATED = rq.HOST_VERBS - ANSWERED_WHILE_STARTING
MANAGER_GATED = rq.MANAGER_VERBS - rq.AGENT_VERBS
"""The manager's lifecycle and approval verbs wait for start-up; what its harness shares
with every agent (`alive`, `recv`, `send`, reports) does not: the restore waits for it."""


class _Scoped:
    """One task of the daemon's group with a cancel scope of its own, for the steps of the
    shutdown that end it (`stop`) or wait for it (`ended_within`) before the rest is
    cancelled."""

    def __init__(self) -> None:
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            with self._scope:
                await work()
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Cancel it, and return once it has ended."""
        self._scope.cancel()
        await self._done.wait()

    async def ended_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for it to end on its own; whether it did."""
        with anyio.move_on_after(seconds):
            await self._done.wait()
        return self._done.is_set()


def _closed(s: Services, conn: Conn) -> None:
    """A connection closed: its leases end and its turn place (held or awaited) frees."""
    s.broker.release(conn.id)
    s.turn_slots.give_back(conn.id)


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception nested task groups wrap, or `group` when it holds more."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


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
        self.ready = asyncio.Event()
        """Set once READY=1 is sent: start-up's `STATUS=starting: …` lines are over."""
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
            on_close=lambda conn: _closed(s, conn),
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
            on_close=lambda conn: _closed(s, conn),
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
            on_close=lambda conn: _closed(s, conn),
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
            st.check_federation()
            git.use(st.git)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        holder: list[Services] = []
        backend = make_backend(st, self.env, holder)
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
            questions=Questions(db, bus, self.clock, broker, st.host_id),
            reminders=Reminders(db, self.clock, broker, st.agents_dir),
            backend=backend,
            liveness=Liveness(),
            agent_sockets=AgentSockets(lambda name: self._agent_server(holder[0], name)),
        )
        s.configs = DeployedConfigs(st.agents_dir)
        s.stuck = StuckWatch(s)
        s.usage = Usage(s)
        key = auth.load_key(st.state_dir / "notify.key")
        s.links = ActionLinks(key, db, self.clock, st.notify_link_hours)
        s.notifier = Notifications(s, targets_of(st))
        if st.federated:  # NATS is imported only here
            service = await gil.import_off_loop("hive_core.federation.service")
            s.federation = service.Federation(s)
            await s.federation.load()
            broker.route_remote(s.federation.host_of, s.federation.outbox.poke)
        holder.append(s)
        return s

    async def run(self) -> None:
        """Serve until `stopping` is set (SIGTERM/SIGINT), then drain and exit. Every task
        it starts has ended when it returns.

        Raises:
            StartupError: the database, a socket or a setting is unusable.
        """
        s = await self._open_services()
        servers = self._servers(s)
        dashboard: Dashboard | None = None
        failure: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                for server in servers:
                    await tg.start(server.serve, name=f"{server.principal.kind} socket")
                await tg.start(s.agent_sockets.serve, name="agent sockets")
                dashboard = await self._open_dashboard(s, servers[0])
                await self._serve(tg, s, servers, dashboard)
                tg.cancel_scope.cancel()  # the rest: backend, loops, watchdog, sockets
        except BaseExceptionGroup as group:
            failure = _sole(group)  # a StartupError as it was raised, not wrapped
            if failure is group:
                raise
        finally:
            if dashboard is not None:
                dashboard.close()
            await s.db.close()
            if self._lock is not None:
                os.close(self._lock)
            logger.info("stopped")
        if failure is not None:
            raise failure

    async def _serve(
        self, tg: TaskGroup, s: Services, servers: list[SocketServer], dashboard: Dashboard
    ) -> None:
        """Start-up, every long-lived task in `tg`; serve until `stopping`; the drain."""
        status = self._supervise(tg, s)
        s.login_link = dashboard.login_link
        s.dashboard_url = dashboard.url
        if s.federation is not None:
            tg.start_soon(s.federation.run, name="federation")
        self._step("starting the container backend")
        await tg.start(s.backend.run, name="backend")
        housekeeping.start_loops(tg, s, self.clock)
        interrupted = await self._reconcile(s)
        self._watch_crashes(tg, s)
        await self._bring_back(s, interrupted)
        # The page reads agents' states and acts: it waits, queued on the bound port, like
        # the requests at the gate.
        web = _Scoped()
        tg.start_soon(web.run, dashboard.serve, name="dashboard")
        self.gate.open()
        self._announce(dashboard)
        await self.stopping.wait()
        await self._shut_down(s, servers, dashboard, web, status)

    async def _open_dashboard(self, s: Services, host: SocketServer) -> Dashboard:
        """The dashboard with its port bound; its actions run as the operator through the
        host socket's dispatch (as do other hosts' requests, the hive spanning hosts). The
        sockets answer while the web stack (a third of the start-up) is imported; what
        needs the rest of start-up waits at the gate."""
        as_operator = Conn(id=OPERATOR_CONN, principal=host.principal)
        if s.federation is not None:

            def as_asked(raw: dict[str, Any], by: str | None) -> Awaitable[WireModel]:
                """As the operator, or as the manager of the asking host (`by`)."""
                if by is None:
                    return host.dispatch_raw(raw, as_operator)
                manager = Principal(kind=host.principal.kind, name=by)
                return host.dispatch_raw(raw, Conn(id=OPERATOR_CONN, principal=manager))

            s.federation.rpc.dispatch = as_asked
        self._step("loading the dashboard")
        web = await gil.import_off_loop("hive_core.dashboard.server")
        dashboard: Dashboard = await web.Dashboard.open(
            s, lambda raw: host.dispatch_raw(raw, as_operator)
        )
        return dashboard

    async def _reconcile(self, s: Services) -> deploys.Reconciled:
        """What the previous daemon left: dangling transitions closed, stale git locks
        cleared, interrupted deploys reconciled from their tags; on nixos, meta opened and
        its `hyperhive` input checked. Returns the deploys still to announce or verify."""
        self._step("reconciling interrupted deploys")
        await s.transients.close_dangling()
        agents_dir = self.settings.agents_dir
        names = await anyio.to_thread.run_sync(agent_dirs.list_dirs, agents_dir)
        await anyio.to_thread.run_sync(config_repos.clear_stale_locks, agents_dir, names)
        interrupted = await deploys.reconcile(s)
        if isinstance(s.backend, NixosBackend):
            await open_nixos(s.backend, self.settings)
            await tell_stale_lock(s, s.backend)
        return interrupted

    def _watch_crashes(self, tg: TaskGroup, s: Services) -> None:
        """The crash watch, and the attention list that reads it among the rest."""
        watch = CrashWatch(s, self.clock)
        s.on_unexpected_exit = watch.nudge  # harnesses dying during restore count too
        s.attention = Attention(s, watch.states, lambda name: agent_info.runs_other_code(s, name))
        tg.start_soon(watch.run, name="crash-watch")
        tg.start_soon(s.attention.run, name="attention")
        tg.start_soon(s.stuck.run, name="stuck watch")
        tg.start_soon(s.notifier.run, name="notifications")

    async def _bring_back(self, s: Services, interrupted: deploys.Reconciled) -> None:
        """The agents that should run, the interrupted deploys finished, the manager."""
        self._step("restoring agents")
        await recovery.restore(s)
        await recovery.finish_interrupted(s, interrupted)
        self._step("starting the manager")
        try:
            await lifecycle.ensure_manager(s)
        except HiveError as exc:
            logger.error("could not start the manager: %s", exc.message)

    async def _shut_down(
        self,
        s: Services,
        servers: list[SocketServer],
        dashboard: Dashboard,
        web: _Scoped,
        status: _Scoped | None,
    ) -> None:
        """Nothing (re)starts any more; the dashboard's streams are cut, the sockets and
        agents drained, and the dashboard gets DRAIN_TIMEOUT to stop. The caller then
        cancels what is left."""
        logger.info("shutting down")
        s.stopping = True
        if status is not None:
            await status.stop()  # its last word is the one below
        self.notifier.send("STOPPING=1", "STATUS=stopping: draining requests and agents")
        await dashboard.stop()
        await self._drain(s, servers)
        if not await web.ended_within(DRAIN_TIMEOUT):
            logger.warning("the dashboard did not stop within %.0fs", DRAIN_TIMEOUT)

    async def _drain(self, s: Services, servers: list[SocketServer]) -> None:
        s.broker.close()  # waiting long-polls answer "shutting down" now
        s.turn_slots.close()
        async with anyio.create_task_group() as tg:
            for srv in servers:
                tg.start_soon(srv.close, DRAIN_TIMEOUT)
            tg.start_soon(s.agent_sockets.close_all, DRAIN_TIMEOUT)
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
        self.ready.set()

    def _supervise(self, tg: TaskGroup, s: Services) -> _Scoped | None:
        """Under systemd: the watchdog pings (if `WatchdogSec=` asks; they go on through
        the drain) and the STATUS= line (its own scope: stopped first), from the start, so
        a slow restore of many agents is watched too."""
        if not self.notifier.enabled:
            return None
        interval = watchdog_interval(self.env, os.getpid())
        if interval is not None:
            tg.start_soon(supervision.keep_alive, self.notifier, interval, name="watchdog")
        status = _Scoped()
        report = functools.partial(supervision.report_status, s, self.notifier, self.ready)
        tg.start_soon(status.run, report, name="status")
        return status

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
