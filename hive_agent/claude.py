"""One `claude -p` process: argv, environment, the stdout pump, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hive_agent.stream import TurnObserver
from hive_share import live
from hive_share.live import LiveEvent

logger = logging.getLogger(__name__)

MAX_STREAM_LINE = 64 * 1024 * 1024
"""A stdout line longer than this is dropped with a note (claude's init alone is KBs)."""
CHUNK = 256 * 1024
CANCEL_GRACE = 5.0
"""Seconds between SIGINT and SIGKILL of the process group."""
ARGV_PROMPT_MAX = 100_000
"""Bytes of prompt passed as an argument; Linux refuses any single argument of 128 KiB."""

CLAUDE_ENV = {
    "ENABLE_TOOL_SEARCH": "false",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}

BUILTIN_TOOLS = (
    "Bash", "Read", "Write", "Edit", "Glob", "Grep", "NotebookEdit", "WebFetch", "WebSearch",
)  # fmt: skip
"""The only Claude Code built-ins a turn offers (`--tools`, an allow list, so a built-in a new
CLI version adds stays out until chosen). The others message, schedule, spawn or switch
worktrees outside the hive, or cannot work in `-p` mode: docs/turn-loop.md says which and why."""

EventSink = Callable[[LiveEvent], Awaitable[None]]


@dataclass(frozen=True)
class Invocation:
    """Everything that decides one claude run."""

    claude_bin: str
    prompt: str
    model: str
    continue_session: bool
    settings: Path
    role_prompt: Path
    mcp_config: Path
    allowed_tools: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    max_turns: int | None = None

    @property
    def prompt_on_stdin(self) -> bool:
        """A prompt too long for one argument goes to claude's stdin instead."""
        return len(self.prompt.encode("utf-8")) > ARGV_PROMPT_MAX

    def argv(self) -> list[str]:
        """The command line; the prompt goes last, after `--` (variadic flags swallow it)."""
        args = [self.claude_bin, "-p", "--output-format", "stream-json", "--verbose"]
        if self.continue_session:
            args.append("--continue")
        if self.max_turns is not None:
            args += ["--max-turns", str(self.max_turns)]
        args += [
            "--model", self.model,
            "--settings", str(self.settings),
            "--append-system-prompt-file", str(self.role_prompt),
            "--system-prompt-snapshot", "off",
            "--mcp-config", str(self.mcp_config),
            "--strict-mcp-config",
            "--tools", ",".join(BUILTIN_TOOLS),
            "--allowedTools", *self.allowed_tools,
        ]  # fmt: skip
        if not self.prompt_on_stdin:
            args += ["--", self.prompt]
        return args


@dataclass
class RunOutcome:
    observer: TurnObserver
    returncode: int | None
    cancelled: bool
    stderr_tail: str = ""
    events: int = 0


@functools.cache
def death_guard() -> tuple[str, ...]:
    """The argv prefix that makes a child die with this process (`PR_SET_PDEATHSIG=SIGKILL`,
    then exec): util-linux's `setpriv` when it is on PATH, which costs one exec, else
    `python -m hive_agent.guard`, which costs an interpreter start."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return (setpriv, "--pdeathsig", "KILL", "--")
    return (sys.executable, "-m", "hive_agent.guard", str(os.getpid()), "--")


@dataclass
class ClaudeProcess:
    """Runs one invocation to completion; `cancel()` may be called from anywhere."""

    invocation: Invocation
    proc: asyncio.subprocess.Process | None = None
    cancelled: bool = False
    killed: bool = False
    _kill_timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    async def run(self, sink: EventSink) -> RunOutcome:
        """Start claude and pump its output into `sink` until it exits.

        Raises:
            FileNotFoundError / PermissionError: the claude binary cannot be run.
        """
        inv = self.invocation
        observer = TurnObserver()
        self.proc = await asyncio.create_subprocess_exec(
            *death_guard(),
            *inv.argv(),
            cwd=inv.cwd,
            env=dict(inv.env),
            # An open stdin pipe makes claude wait for it: /dev/null unless it carries the prompt.
            stdin=asyncio.subprocess.PIPE if inv.prompt_on_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        if self.killed:  # killed or cancelled while starting
            self._signal(signal.SIGKILL)
        elif self.cancelled:
            self._interrupt()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stderr_task = asyncio.ensure_future(_drain_stderr(self.proc.stderr))
        count = 0
        try:
            if inv.prompt_on_stdin:
                await _feed(self.proc, inv.prompt)
            async for line in _lines(self.proc.stdout):
                if line is None:
                    await sink(live.Note(text="dropped a stdout line over 64 MiB"))
                    continue
                for event in observer.feed(line):
                    count += 1
                    await sink(event)
            code = await self.proc.wait()
        finally:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            if self.proc.returncode is None:
                self._signal(signal.SIGKILL)
                await self.proc.wait()
            tail = await stderr_task
        return RunOutcome(observer, code, self.cancelled, tail, count)

    def cancel(self) -> None:
        """SIGINT the process group now, SIGKILL it after the grace period."""
        if self.cancelled:
            return
        self.cancelled = True
        self._interrupt()

    def kill(self) -> None:
        """SIGKILL the process group now: the harness is stopping, and the turn's items
        come back after the restart, so there is nothing to wind down gracefully."""
        self.cancelled = self.killed = True
        self._signal(signal.SIGKILL)

    def _interrupt(self) -> None:
        if self.proc is None or self.proc.returncode is not None or self._kill_timer:
            return
        self._signal(signal.SIGINT)
        loop = asyncio.get_running_loop()
        self._kill_timer = loop.call_later(CANCEL_GRACE, self._signal, signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


async def _feed(proc: asyncio.subprocess.Process, prompt: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(prompt.encode("utf-8"))
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        logger.warning("claude closed its stdin before reading the prompt")
    finally:
        proc.stdin.close()


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes | None]:
    """Lines of any length up to MAX_STREAM_LINE; None stands for a dropped one."""
    buf = bytearray()
    dropping = False
    while True:
        chunk = await stream.read(CHUNK)
        if not chunk:
            if dropping:
                yield None
            elif buf:
                yield bytes(buf)
            return
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not dropping:
                    buf += chunk[start:]
                    if len(buf) > MAX_STREAM_LINE:
                        buf.clear()
                        dropping = True
                break
            if dropping or len(buf) + nl - start > MAX_STREAM_LINE:
                dropping = False
                yield None
            else:
                buf += chunk[start:nl]
                yield bytes(buf)
            buf.clear()
            start = nl + 1


async def _drain_stderr(stream: asyncio.StreamReader, keep: int = 4000) -> str:
    tail = b""
    while True:
        chunk = await stream.read(CHUNK)
        if not chunk:
            return tail.decode("utf-8", errors="replace").strip()
        for line in chunk.splitlines():
            if line.strip():
                logger.info("claude stderr: %s", line[:2000].decode("utf-8", errors="replace"))
        tail = (tail + chunk)[-keep:]
