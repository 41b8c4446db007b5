"""One `claude -p` process: argv, environment, the stdout pump, cancellation."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

from hive_agent.stream import TurnObserver
from hive_share import live
from hive_share.live import LiveEvent

logger = logging.getLogger(__name__)

MAX_STREAM_LINE = 64 * 1024 * 1024
"""A stdout line longer than this is dropped with a note (claude's init alone is KBs)."""
CHUNK = 256 * 1024
CANCEL_GRACE = 5.0
"""Seconds between SIGINT and SIGKILL of the process group."""
REAP_WAIT = 5.0
"""Seconds a run waits for its process to be reaped after the SIGKILL on its way out."""
ARGV_PROMPT_MAX = 100_000
"""Bytes of prompt passed as an argument; Linux refuses any single argument of 128 KiB."""

CLAUDE_ENV = {
    "ENABLE_TOOL_SEARCH": "false",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "MCP_PROTOCOL_NEGOTIATION": "legacy",
}
"""What every claude run gets (docs/gotchas.md): no tool search (the MCP tools' schemas go to
the model), no updates or other traffic, and the classic `initialize` handshake with MCP
servers. The CLI's newer one opens a `subscriptions/listen` stream and waits about 50 ms
before it lists the tools, before every turn; the variable is the CLI's own, and a CLI
without it negotiates as it would anyway."""

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
    """Runs one invocation to completion; `cancel()` and `kill()` may be called from anywhere.

    The process is anyio's (`anyio.open_process`, on the loop's own child watcher as
    before); what anyio would do on a cancel (kill the leader only) is not enough here, so
    the run kills claude's whole process group itself before it lets go of the process.
    """

    invocation: Invocation
    on_spent: Callable[[int], None] | None = None
    """Hears the tokens each assistant message spends, as claude prints it (`TurnObserver`)."""
    on_init: Callable[[], None] | None = None
    """Hears claude's `system/init` (`TurnObserver`)."""
    proc: anyio.abc.Process | None = None
    cancelled: bool = False
    killed: bool = False
    _interrupted: anyio.Event = field(default_factory=anyio.Event, repr=False)
    """Set with the SIGINT: the run's escalation task SIGKILLs after the grace period."""

    async def run(self, sink: EventSink) -> RunOutcome:
        """Start claude and pump its output into `sink` until it exits; a cancelled run (the
        harness stopping past its grace) kills the process group on its way out.

        Raises:
            FileNotFoundError / PermissionError: the claude binary cannot be run.
        """
        inv = self.invocation
        observer = TurnObserver(on_spent=self.on_spent, on_init=self.on_init)
        self.proc = proc = await anyio.open_process(
            [*death_guard(), *inv.argv()],
            cwd=inv.cwd,
            env=dict(inv.env),
            # An open stdin pipe makes claude wait for it: /dev/null unless it carries the prompt.
            stdin=subprocess.PIPE if inv.prompt_on_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if self.killed:  # killed or cancelled while starting
            self._signal(signal.SIGKILL)
        elif self.cancelled:
            self._interrupt()
        assert proc.stdout is not None and proc.stderr is not None
        stderr = _StderrTail()
        count = 0
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(stderr.drain, proc.stderr)
                escalation = await tg.start(self._escalate)
                if inv.prompt_on_stdin:
                    assert proc.stdin is not None
                    await _feed(proc.stdin, inv.prompt)
                async for line in _lines(proc.stdout):
                    if line is None:
                        await sink(live.Note(text="dropped a stdout line over 64 MiB"))
                        continue
                    for event in observer.feed(line):
                        count += 1
                        await sink(event)
                code = await proc.wait()
                escalation.cancel()  # exited: nothing left to kill
        finally:
            with anyio.move_on_after(REAP_WAIT, shield=True) as reaping:
                if proc.returncode is None:
                    self._signal(signal.SIGKILL)
                await proc.aclose()  # closes the pipes, reaps the process
            if reaping.cancelled_caught:
                logger.warning(
                    "claude (pid %d) not reaped %.0fs after a SIGKILL", proc.pid, REAP_WAIT
                )
        return RunOutcome(observer, code, self.cancelled, stderr.text(), count)

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
        if self.proc is None or self.proc.returncode is not None or self._interrupted.is_set():
            return
        self._signal(signal.SIGINT)
        self._interrupted.set()

    async def _escalate(
        self, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """SIGKILL the process group CANCEL_GRACE after a SIGINT, unless cancelled first."""
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await self._interrupted.wait()
            await anyio.sleep(CANCEL_GRACE)
            self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


async def _feed(stdin: anyio.abc.ByteSendStream, prompt: str) -> None:
    try:
        await stdin.send(prompt.encode("utf-8"))
    except (anyio.BrokenResourceError, BrokenPipeError, ConnectionResetError):
        logger.warning("claude closed its stdin before reading the prompt")
    finally:
        await stdin.aclose()


async def _lines(stream: anyio.abc.ByteReceiveStream) -> AsyncIterator[bytes | None]:
    """Lines of any length up to MAX_STREAM_LINE; None stands for a dropped one."""
    buf = bytearray()
    dropping = False
    while True:
        try:
            chunk = await stream.receive(CHUNK)
        except anyio.EndOfStream:
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


class _StderrTail:
    """claude's stderr, logged line by line; the last `keep` bytes kept for the turn."""

    def __init__(self, keep: int = 4000) -> None:
        self._keep = keep
        self._tail = b""

    async def drain(self, stream: anyio.abc.ByteReceiveStream) -> None:
        async for chunk in stream:
            for line in chunk.splitlines():
                if line.strip():
                    logger.info("claude stderr: %s", line[:2000].decode("utf-8", errors="replace"))
            self._tail = (self._tail + chunk)[-self._keep :]

    def text(self) -> str:
        return self._tail.decode("utf-8", errors="replace").strip()
