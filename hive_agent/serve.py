"""`hive-agent serve` / `hive-mind serve`: report to hive-core, run turns, exit on SIGTERM.

Everything the harness runs is a task of one anyio task group (`serve`): the control
socket and its connections, the turn loop and its claude processes, the MCP host and its
sessions, the history's pruning, the agent page's server, the reports to hive-core, a
login's relay. Shutdown winds the turn and the page down within their bounds, then
cancels the group's scope; `serve` returns once every task has ended.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio
import anyio.abc
import anyio.to_thread

from hive_agent import build_version, start_check, web_start
from hive_agent.control import Control, serve_control
from hive_agent.history import EventHistory
from hive_agent.login_session import LoginSession
from hive_agent.settings import HarnessSettings
from hive_agent.start_check import StartReport
from hive_agent.turn import Harness
from hive_agent.turn_stats import TurnStats
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.agent_config import AgentConfig
from hive_share.client import HiveClient, NotRunning
from hive_share.models import WireModel

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
CONNECT_ATTEMPTS = 20
PRUNE_INTERVAL = 3600.0
STOP_GRACE = 10.0
PAGE_GRACE = 2.0
"""Seconds the agent page has to close its connections when the harness stops."""
MCP_GRACE = 2.0
"""Seconds the MCP server's HTTP listener has to close when the harness stops."""
USAGE_GRACE = 2.0
"""Seconds a turn-usage report under way has to end when the harness stops (what it leaves
unsent goes at the next start)."""


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when the process that started us dies (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def report_alive(settings: HarnessSettings, report: StartReport) -> None:
    """Tell hive-core this harness is up, with what its start check found; retries while
    the daemon is (re)starting.

    Raises:
        NotRunning: hive-core never answered.
    """
    version = await anyio.to_thread.run_sync(build_version)  # a digest of the source, once
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            async with HiveClient(settings.socket) as client:
                alive = rq.Alive(
                    cmd="alive", pid=os.getpid(), version=version,
                    model=report.model, model_source=report.model_source,
                    problems=report.problems[:20],
                )  # fmt: skip
                await client.call(alive, rs.Done)
                return
        except NotRunning:
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            await anyio.sleep(min(0.05 * 2**attempt, 1.0))


async def prune_once(history: EventHistory, stats: TurnStats, now: float) -> None:
    """Prune the event history (7 days) and the turn statistics (90 days); a failure of
    either is logged, and the other still runs."""
    for what, prune in (("events", history.prune), ("turn stats rows", stats.prune)):
        try:
            removed = await prune(now)
        except Exception:
            logger.exception("pruning the %s failed; retrying in an hour", what)
            continue
        if removed:
            logger.info("pruned %d %s past their retention", removed, what)


async def _prune_loop(history: EventHistory, stats: TurnStats) -> None:
    while True:
        await prune_once(history, stats, time.time())
        await anyio.sleep(PRUNE_INTERVAL)


class _Controls:
    """What `harness.sock` does for hive-core: the turn controls, the login session, the
    page's codes and the event history."""

    def __init__(self, harness: Harness, history: EventHistory, login: LoginSession) -> None:
        self.harness, self.history, self.login = harness, history, login
        self.page: web_start.LazyPage | None = None
        """Set once the page's port is bound (after the harness reported itself alive)."""
        self.page_bound = anyio.Event()

    def set_page(self, page: web_start.LazyPage) -> None:
        self.page = page
        self.page_bound.set()

    async def _web_code(self, code: str, send_token: str | None) -> str:
        """Hand a login code to the page, built now if it is not yet (a link to it is
        about to be opened)."""
        with anyio.move_on_after(web_start.PAGE_START_WAIT):
            await self.page_bound.wait()
        if self.page is None:
            raise ValueError("the agent page is still starting; ask again in a moment")
        return (await self.page.built()).add_code(code, send_token)

    async def answer(self, req: Control) -> WireModel:
        harness = self.harness
        match req:
            case rq.Cancel():
                return rs.Done(detail=await harness.cancel())
            case rq.NewSession():
                return rs.Done(detail=harness.request_new_session())
            case rq.SetModel(model=model):
                return rs.Done(detail=await harness.set_model(model))
            case rq.Compact():
                return rs.Done(detail=harness.request_compact())
            case rq.TurnStatus(after_turns=after, until_state=state, wait_seconds=wait):
                return await harness.status(after, state, wait)
            case rq.Events(after=after, limit=limit, wait_seconds=wait):
                rows = await self.history.events(after, limit, wait)
                return rs.TurnEvents(events=[rs.TurnEvent(**row) for row in rows])
            case rq.HiveSignals(signals=signals):
                harness.watch.hive_says(list(signals))
                return rs.Done(detail=f"noted {', '.join(signals) or 'no signals'}")
            case rq.WebCode(code=code, send_token=send_token):
                return rs.Done(detail=await self._web_code(code, send_token))
            case rq.LoginStart() | rq.LoginCode() | rq.LoginCancel() | rq.LoginStatus():
                return await self._login(req)

    async def _login(self, req: rq.LoginControl) -> WireModel:
        login_session = self.login
        match req:
            case rq.LoginStart():
                return rs.Done(detail=await login_session.start())
            case rq.LoginCode(code=code):
                return rs.Done(detail=await login_session.code(code))
            case rq.LoginCancel():
                return rs.Done(detail=await login_session.cancel())
            case rq.LoginStatus(after=after, wait_seconds=wait):
                return await login_session.status(after, wait)


async def _listen_mcp(harness: Harness) -> None:
    """Listen on `mcp.sock` and bind the MCP server's port now (the SDK waits for the first
    turn); a failure is logged, and the first turn tries again."""
    try:
        await harness.mcp.listen()
    except Exception:
        logger.exception("the MCP host did not start; the next turn retries")


class _Task:
    """A task of the harness's group with a cancel scope of its own, which shutdown can wait
    for a while before it cancels it (the turn loop, the page)."""

    def __init__(self, func: Callable[[], Awaitable[None]]) -> None:
        self._func = func
        self.scope = anyio.CancelScope()
        self._done = anyio.Event()

    async def run(self) -> None:
        try:
            with self.scope:
                await self._func()
        finally:
            self._done.set()

    async def end_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for the task to end by itself, then cancel it; whether it
        ended in time."""
        with anyio.move_on_after(seconds):
            await self._done.wait()
        self.scope.cancel()
        return self._done.is_set()


async def _stop_on(signals: AsyncIterator[int], stopping: anyio.Event) -> None:
    async for _ in signals:  # SIGTERM (hive-core's stop, a dead parent) or SIGINT
        stopping.set()


async def serve(settings: HarnessSettings, env: Mapping[str, str]) -> None:
    """The harness, until SIGTERM or SIGINT; returns once all it started has ended."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        history = await EventHistory.open(settings.state)
        try:
            stats = await TurnStats.open(settings.state)
            try:
                async with anyio.create_task_group() as tg:
                    stopping = anyio.Event()
                    tg.start_soon(_stop_on, signals, stopping)
                    await _run(settings, env, history, stats, tg, stopping)
                    tg.cancel_scope.cancel()  # what is left: one cancellation ends it all
            finally:
                with anyio.CancelScope(shield=True):
                    await stats.close()
        finally:
            with anyio.CancelScope(shield=True):
                await history.close()


async def _run(
    settings: HarnessSettings,
    env: Mapping[str, str],
    history: EventHistory,
    stats: TurnStats,
    tg: anyio.abc.TaskGroup,
    stopping: anyio.Event,
) -> None:
    """Start everything in `tg`, wait for `stopping`, then wind the turn and the page down
    within their bounds (the caller cancels the rest)."""
    harness = Harness(settings, env, history, stats, tg)
    login_session = LoginSession(
        settings.claude_bin, harness.login_env, harness.emit, harness.report_login, tg
    )
    controls = _Controls(harness, history, login_session)
    await tg.start(serve_control, settings.harness_socket, controls.answer)
    report = await start_check.check(
        settings.agent_config, settings.extra_mcp_file, harness.models,
        harness.claude_env(AgentConfig()), settings.state,
    )  # fmt: skip
    await report_alive(settings, report)
    logger.info("%s (%s) is up, pid %d", settings.agent_name, settings.role, os.getpid())
    await harness.in_touch()  # the stuck limits before the first turn; usage left unsent
    # Neither the MCP SDK nor the page's web stack is imported here: an idle harness does
    # without both (a turn imports the SDK, the page's first visitor or login code its
    # stack; docs/turn-loop.md, "What an idle harness holds").
    await _listen_mcp(harness)
    turns = _Task(functools.partial(harness.serve, stopping))
    tg.start_soon(turns.run)
    tg.start_soon(_prune_loop, history, stats)
    page = web_start.LazyPage(settings, harness, history, login_session)
    controls.set_page(page)
    page_task = _Task(page.serve)
    tg.start_soon(page_task.run)
    await stopping.wait()
    page.stop()
    logger.info("%s stopping", settings.agent_name)
    if harness.busy:  # let the turn end and record itself, within a bound
        await harness.cancel(stopping=True)
        if not await turns.end_within(STOP_GRACE):
            logger.warning("turn did not wind down in %.0fs", STOP_GRACE)
    turns.scope.cancel()  # idle in a long-poll: the lease ends with the connection
    if not await harness.mcp.wind_down(MCP_GRACE):  # no claude runs now
        logger.warning("the MCP server's HTTP listener did not close within %.0fs", MCP_GRACE)
    if not await harness.usage.wind_down(USAGE_GRACE):
        logger.warning("turn usage unsent after %.0fs: it goes at the next start", USAGE_GRACE)
    if not await page_task.end_within(PAGE_GRACE):
        logger.warning("the agent page did not close within %.0fs", PAGE_GRACE)
    await login_session.close()
