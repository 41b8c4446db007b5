"""The agent page until it is first needed: its port bound as the harness starts, its web
stack (FastAPI, uvicorn, the page's routes: `web.py`) imported only when something asks for
the page, so a harness whose page nobody opens does without it.

Two things ask: a connection on the port (the kernel queues it while the stack is imported,
then the page's server takes it), and a login code from hive-core (`web_code`, handed over
as it mints a link to the page: the browser that follows it finds the page built). Nothing
else needs the page: its session key is made when it is built, so no credential exists
before a code does.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import anyio

from hive_share import gil

if TYPE_CHECKING:
    from hive_agent.history import EventHistory
    from hive_agent.login_session import LoginSession
    from hive_agent.settings import HarnessSettings
    from hive_agent.turn import Harness
    from hive_agent.web import AgentPage

logger = logging.getLogger(__name__)

PAGE_START_WAIT = 10.0
"""Seconds a login code waits for the page to be built."""


def bind(host: str, port: int) -> socket.socket | None:
    """A listening socket on `host`:`port`, or None (logged) when the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        logger.warning("the agent page cannot listen on port %d: %s", port, exc.strerror)
        return None
    sock.listen(64)
    sock.setblocking(False)
    return sock


class LazyPage:
    """The page's port, bound up front (a taken port is logged, not fatal), and the page
    built and served (`serve`, a task of the harness) once it is first needed."""

    def __init__(
        self,
        settings: HarnessSettings,
        harness: Harness,
        history: EventHistory,
        login: LoginSession,
    ) -> None:
        self._parts = (settings, harness, history, login)
        port = settings.web_port
        self._sock = bind(settings.web_host, port) if port else None
        self.page: AgentPage | None = None
        """The page, once built."""
        self._needed = anyio.Event()
        self._built = anyio.Event()
        """Set when the build ended: built, or failed."""
        self._stopped = False

    async def built(self) -> AgentPage:
        """The page, built now if it is not yet, waiting up to `PAGE_START_WAIT` for it.

        Raises:
            ValueError: it is still not built.
        """
        if self._stopped and self.page is None:
            raise ValueError("the agent page is stopping")
        self._needed.set()
        with anyio.move_on_after(PAGE_START_WAIT):
            await self._built.wait()
        if self.page is None:
            if self._built.is_set():
                raise ValueError("the agent page could not be built; see the harness's log")
            raise ValueError("the agent page is still starting; ask again in a moment")
        return self.page

    async def serve(self) -> None:
        """Wait until the page is needed, build it (the web stack imported in a thread, the
        loop answering meanwhile), then serve it until `stop`; a page that fails is logged,
        and the agent goes on."""
        try:
            await self._until_needed()
            if self._stopped:  # stopped before anyone asked: nothing to build
                return
            try:
                web = await gil.import_off_loop("hive_agent.web")
                page = web.AgentPage(*self._parts, self._sock)
            except Exception:
                logger.exception("the agent page could not be built")
                self._built.set()  # a login code waiting for it is refused at once
                return
            self._built_now(page)
            await page.serve()
        finally:
            if self._sock is not None:
                self._sock.close()  # the page's server closed it already, if it served

    def _built_now(self, page: AgentPage) -> None:
        self.page = page
        self._built.set()
        if self._stopped:  # stopped while it was built: it never serves
            page.stop()

    async def _until_needed(self) -> None:
        sock = self._sock
        if sock is None:  # no port to serve: only a login code builds the page
            await self._needed.wait()
            return
        async with anyio.create_task_group() as tg:

            async def first_connection() -> None:
                await anyio.wait_readable(sock)  # a connection is queued: accept() is ready
                self._needed.set()

            tg.start_soon(first_connection)
            await self._needed.wait()
            tg.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop the page: its streams told and its server asked to stop, or, not built yet,
        never built."""
        self._stopped = True
        if self.page is not None:
            self.page.stop()
        self._needed.set()
