"""`hive-agent serve` / `hive-mind serve`: report to hive-core, answer its pings, exit on SIGTERM.

Messages stay in the broker until the turn loop consumes them.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal

from hive_agent.control import start_control, stop_control
from hive_agent.settings import HarnessSettings
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient, NotRunning

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
CONNECT_ATTEMPTS = 20


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGTERM when the process that started us dies (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def report_alive(settings: HarnessSettings) -> None:
    """Tell hive-core this harness is up; retries while the daemon is (re)starting.

    Raises:
        NotRunning: hive-core never answered.
    """
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            async with HiveClient(settings.socket) as client:
                await client.call(rq.Alive(cmd="alive", pid=os.getpid()), rs.Done)
                return
        except NotRunning:
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))


async def serve(settings: HarnessSettings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    control = await start_control(settings.harness_socket)
    try:
        await report_alive(settings)
        logger.info("%s (%s) is up, pid %d", settings.agent_name, settings.role, os.getpid())
        await stopping.wait()
        logger.info("%s stopping", settings.agent_name)
    finally:
        await stop_control(control, settings.harness_socket)
