"""`hive-agent serve` / `hive-mind serve`: report to hive-core, run turns, exit on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hive_agent import build_version, start_check
from hive_agent.control import Control, start_control, stop_control
from hive_agent.history import EventHistory
from hive_agent.login_session import LoginSession
from hive_agent.settings import HarnessSettings
from hive_agent.start_check import StartReport
from hive_agent.turn import Harness
from hive_agent.turn_stats import TurnStats
from hive_share import gil
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.agent_config import AgentConfig
from hive_share.client import HiveClient, NotRunning
from hive_share.models import WireModel

if TYPE_CHECKING:
    from hive_agent.web import AgentPage

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
CONNECT_ATTEMPTS = 20
PRUNE_INTERVAL = 3600.0
STOP_GRACE = 10.0
PAGE_GRACE = 2.0
"""Seconds the agent page has to close its connections when the harness stops."""
PAGE_START_WAIT = 10.0
"""Seconds a login code for the page waits for the page to be built (its web stack is
imported in a thread once the harness is up)."""


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
    version = await asyncio.to_thread(build_version)  # a digest of the source, once
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
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))


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
        await asyncio.sleep(PRUNE_INTERVAL)


class _Controls:
    """What `harness.sock` does for hive-core: the turn controls, the login session, the
    page's codes and the event history."""

    def __init__(self, harness: Harness, history: EventHistory, login: LoginSession) -> None:
        self.harness, self.history, self.login = harness, history, login
        self.page: AgentPage | None = None
        """Set once the page's server is built (after the harness reported itself alive)."""
        self.page_built = asyncio.Event()

    def set_page(self, page: AgentPage) -> None:
        self.page = page
        self.page_built.set()

    async def built_page(self) -> AgentPage:
        """The page, waiting up to `PAGE_START_WAIT` for it to be built.

        Raises:
            ValueError: it is still not built.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PAGE_START_WAIT):
                await self.page_built.wait()
        if self.page is None:
            raise ValueError("the agent page is still starting; ask again in a moment")
        return self.page

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
            case rq.WebCode(code=code, send_token=send_token):
                return rs.Done(detail=(await self.built_page()).add_code(code, send_token))
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


async def _start_mcp(harness: Harness) -> None:
    """Start the MCP host now; a failure is logged, and the first turn tries again."""
    try:
        with gil.responsive():  # the SDK's import runs in a thread meanwhile
            await harness.mcp.start()
    except Exception:
        logger.exception("the MCP host did not start; the next turn retries")


async def serve(settings: HarnessSettings, env: Mapping[str, str]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    history = await EventHistory.open(settings.state)
    stats = await TurnStats.open(settings.state)
    harness = Harness(settings, env, history, stats)
    login_session = LoginSession(
        settings.claude_bin, harness.login_env, harness.emit, harness.report_login
    )

    controls = _Controls(harness, history, login_session)
    control = await start_control(settings.harness_socket, controls.answer)
    try:
        report = await start_check.check(
            settings.agent_config, settings.extra_mcp_file, harness.models,
            harness.claude_env(AgentConfig()), settings.state,
        )  # fmt: skip
        await report_alive(settings, report)
        logger.info("%s (%s) is up, pid %d", settings.agent_name, settings.role, os.getpid())
        async with asyncio.TaskGroup() as tg:
            loop_task = tg.create_task(harness.serve(stopping))
            prune_task = tg.create_task(_prune_loop(history, stats))
            # Warm before the first turn: claude starts our MCP relay as soon as it starts.
            mcp_task = tg.create_task(_start_mcp(harness))
            # Imported only now, off the loop: the web stack costs a start-up a third of a
            # second, and hive-core waits for `alive`, not for the page.
            web = await gil.import_off_loop("hive_agent.web")
            page = web.AgentPage(settings, harness, history, login_session)
            controls.set_page(page)
            page_task = tg.create_task(page.serve())
            await stopping.wait()
            page.stop()
            logger.info("%s stopping", settings.agent_name)
            if harness.busy:  # let the turn end and record itself, within a bound
                await harness.cancel(stopping=True)
                try:
                    async with asyncio.timeout(STOP_GRACE):
                        await asyncio.shield(loop_task)
                except TimeoutError:
                    logger.warning("turn did not wind down in %.0fs", STOP_GRACE)
            loop_task.cancel()  # idle in a long-poll: the lease ends with the connection
            prune_task.cancel()
            mcp_task.cancel()
            try:
                async with asyncio.timeout(PAGE_GRACE):
                    await asyncio.shield(page_task)
            except TimeoutError:
                logger.warning("the agent page did not close within %.0fs", PAGE_GRACE)
            page_task.cancel()
    finally:
        await stop_control(control, settings.harness_socket)
        await login_session.close()
        await harness.mcp.stop()
        await history.close()
        await stats.close()
