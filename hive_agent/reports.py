"""What the harness tells hive-core of itself: the turn state with the next turn's model and
where it comes from (the dashboard's chip; one report in flight, always of the latest), and
the login state (probed while unknown, reported when it changed, kept only once hive-core
has it)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio.abc

from hive_agent import login
from hive_share import live
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient
from hive_share.live import LiveEvent, ResultKind, TurnState
from hive_share.models import LoginReport, LoginStatus, ModelSource

logger = logging.getLogger(__name__)

StateReport = tuple[TurnState, str | None, ModelSource | None]
"""The turn state, the next turn's model and where that model comes from."""


class StateReporter:
    """Reports `current()` to hive-core whenever asked, until what it last heard is current;
    each report a task of `tasks` (the harness's group)."""

    def __init__(
        self, socket: Path, current: Callable[[], StateReport], tasks: anyio.abc.TaskGroup
    ) -> None:
        self._socket = socket
        self._current = current
        self._tasks = tasks
        self._reported: StateReport = ("idle", None, None)
        """What hive-core last heard from here (a harness that reports alive is idle; its
        model went with that report)."""
        self._sending = False

    def report(self) -> None:
        """Tell hive-core the current state, unless a report is already on its way (that
        one sends again if the state moved on meanwhile)."""
        if not self._sending:
            self._sending = True
            self._tasks.start_soon(self._send)

    async def _send(self) -> None:
        try:
            while True:
                current = self._current()
                if current == self._reported:
                    return
                state, model, source = current
                report = rq.ReportTurnState(
                    cmd="turn_state", state=state, model=model, model_source=source
                )
                try:
                    async with HiveClient(self._socket) as core:
                        await core.call(report, rs.Done)
                except ClientError as exc:
                    logger.warning("could not report turn state %s: %s", state, exc)
                    return
                self._reported = current
        finally:
            self._sending = False


class LoginReporter:
    """The login state hive-core knows; a failed report leaves it unchanged, so the next
    report (at the latest, the next turn's) sends it again."""

    def __init__(
        self,
        socket: Path,
        emit: Callable[[LiveEvent], Awaitable[None]],
        expiry: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._socket = socket
        self._emit = emit
        self._expiry = expiry
        """When a working login stops working by itself, if its credentials say so."""
        self.state: LoginStatus = "unknown"
        self.expires_at: float | None = None

    async def report(self, state: LoginReport, detail: str) -> None:
        """Tell hive-core (and the page, in a note when a login is needed or claude cannot
        run) the login state, with its expiry when it has one, when either changed."""
        expires_at = self._expiry() if state == "logged_in" else None
        if (state, expires_at) == (self.state, self.expires_at):
            return
        if state == "needs_login":
            await self._emit(live.Note(text=f"Claude Code needs a login: {detail}"))
        elif state == "claude_missing":
            await self._emit(live.Note(text=f"Claude Code cannot be run: {detail}"))
        try:
            async with HiveClient(self._socket) as core:
                report = rq.LoginState(
                    cmd="login_state", state=state, detail=detail[:1000], expires_at=expires_at
                )
                await core.call(report, rs.Done)
        except ClientError as exc:
            logger.warning("could not report login state %s (will retry): %s", state, exc)
            return
        self.state, self.expires_at = state, expires_at  # only once hive-core knows it

    async def probe_once(self, claude_bin: str, env: Callable[[], dict[str, str]]) -> None:
        """While the login state is unknown, find it out (the environment's credentials,
        else `claude auth status`) and report it."""
        if self.state == "unknown":
            state, detail = await login.probe(claude_bin, env())
            await self.report(state, detail)

    async def after_turn(self, kind: ResultKind, detail: str) -> None:
        """What a turn's ending says of the login: an auth error needs one, a success has it."""
        if kind == "auth_error":
            await self.report("needs_login", detail)
        elif kind == "success":
            await self.report("logged_in", "")
