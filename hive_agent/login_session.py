"""Logging an agent's Claude Code in: the harness runs `claude auth login` over pipes and
relays it, for the operator's terminal (`hive-core login NAME`) or the agent's page.

The CLI prints a URL, then a prompt without a newline, and waits for the code the operator
pasted; so stdout is read as a stream, not by lines. The harness only relays: it never
stores or logs the code, nor anything the CLI writes to its own config dir. When the CLI
exits, `claude auth status` decides; a success is reported to hive-core like any other
login change.

The CLI's relay is a task of the harness's task group: a harness that stops kills a login
still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
from collections.abc import Awaitable, Callable, Mapping

import anyio
import anyio.abc

from hive_agent import login
from hive_share import live
from hive_share.live import LoginSessionState
from hive_share.models import LoginReport
from hive_share.responses import LoginProgress

logger = logging.getLogger(__name__)

SESSION_TIMEOUT = 600.0
"""Seconds a login session may take, code included."""
MAX_OUTPUT = 64 * 1024
"""Characters of the CLI's output kept for the operator (the start of it is dropped)."""
URL = re.compile(r"https://[^\s\"'<>]+")

Emit = Callable[[live.LiveEvent], Awaitable[None]]
Report = Callable[[LoginReport, str], Awaitable[None]]


class LoginSession:
    def __init__(self, claude_bin: str, env: Callable[[], Mapping[str, str]], emit: Emit,
                 report: Report, tasks: anyio.abc.TaskGroup) -> None:  # fmt: skip
        self._claude_bin = claude_bin
        self._env = env
        self._emit = emit
        self._report = report
        self._tasks = tasks
        """Where a login's relay runs."""
        self.state: LoginSessionState = "idle"
        self.url: str | None = None
        self._output = ""
        self._dropped = 0
        """Characters cut from the start of `_output`; offsets count from the first one."""
        self._code_sent = False
        self._proc: anyio.abc.Process | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> str:
        if self.state == "running":
            return "a login is already running; paste its code or cancel it"
        env = dict(self._env())
        missing = login.why_not_runnable(self._claude_bin, env)
        if missing:
            raise ValueError(f"cannot log in: {missing}")
        self._proc = await anyio.open_process(
            [self._claude_bin, "auth", "login"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._output, self._dropped, self.url, self._code_sent = "", 0, None, False
        await self._set("running")
        self._tasks.start_soon(self._run, self._proc)
        return "login started: open the link it prints and paste the code"

    async def code(self, code: str) -> str:
        proc = self._proc
        if self.state != "running" or proc is None or proc.stdin is None:
            raise ValueError("no login is running; start one first")
        with contextlib.suppress(anyio.BrokenResourceError, ConnectionError):
            await proc.stdin.send(code.encode() + b"\n")
        self._code_sent = True
        await self._set("running")
        return "code sent"

    async def cancel(self) -> str:
        if self.state != "running" or self._proc is None:
            return "no login is running"
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        await self._set("cancelled")
        return "login cancelled"

    async def status(self, after: int, wait_seconds: float) -> LoginProgress:
        def moved() -> bool:
            return self._dropped + len(self._output) > after or self.state != "running"

        if wait_seconds > 0:
            with anyio.move_on_after(wait_seconds):
                async with self._changed:
                    await self._changed.wait_for(moved)
        start = max(after - self._dropped, 0)
        return LoginProgress(
            state=self.state, url=self.url, output=self._output[start:],
            offset=self._dropped + len(self._output),
            waiting_for_code=self.state == "running" and self.url is not None
            and not self._code_sent,
        )  # fmt: skip

    async def _run(self, proc: anyio.abc.Process) -> None:
        """Relay the CLI's output until it exits (or SESSION_TIMEOUT), then find out whether
        it logged in; the process goes with this task, however it ends."""
        assert proc.stdout is not None
        async with proc:  # on the way out: pipes closed, the process killed if still there
            with anyio.move_on_after(SESSION_TIMEOUT) as waiting:
                async for chunk in proc.stdout:
                    await self._append(chunk.decode("utf-8", errors="replace"))
                await proc.wait()
            if waiting.cancelled_caught:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                await self._set("failed", f"no login within {SESSION_TIMEOUT:.0f}s")
                return
        if self.state == "cancelled":
            return
        state, detail = await login.probe(self._claude_bin, self._env())
        if state == "logged_in":
            await self._set("logged_in")
            await self._report("logged_in", "")
        else:
            await self._set("failed", detail or f"`claude auth login` exited {proc.returncode}")

    async def _append(self, text: str) -> None:
        self._output += text
        if len(self._output) > MAX_OUTPUT:
            cut = len(self._output) - MAX_OUTPUT
            self._output, self._dropped = self._output[cut:], self._dropped + cut
        await self._emit(live.LoginOutput(text=text))
        if self.url is None and (found := URL.search(self._output)) is not None:
            self.url = found.group(0)
            await self._emit(live.LoginChanged(state=self.state, url=self.url))
        async with self._changed:
            self._changed.notify_all()

    async def _set(self, state: LoginSessionState, detail: str = "") -> None:
        self.state = state
        if state != "running":
            logger.info("login session %s%s", state, f": {detail}" if detail else "")
        await self._emit(live.LoginChanged(state=state, url=self.url, detail=detail))
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        """End a login still running (the harness is stopping)."""
        await self.cancel()
