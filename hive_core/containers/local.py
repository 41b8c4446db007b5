"""The `local` backend: each agent is a supervised `hive-agent`/`hive-mind` child process.

No root, no NixOS, and no isolation: the harness runs as the daemon's user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
from anyio.abc import Process, TaskGroup, TaskStatus

from hive_core.containers import logfile
from hive_core.containers.backend import AgentSpec, ContainerStatus
from hive_core.errors import BackendError
from hive_core.settings import Settings

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
"""Seconds a harness gets to exit after SIGTERM before it is killed."""

LOG_ROTATE_BYTES = 10 * 1024 * 1024

ExitHook = Callable[[str, int, int, bool], None]
"""`(name, pid, returncode, expected)`: called when a harness process exits."""

STRIPPED_ENV = frozenset(
    {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC"}
    | {"WATCHDOG_PID", "JOURNAL_STREAM", "STATE_DIRECTORY", "RUNTIME_DIRECTORY"}
    | {f"HIVE_{field.upper()}" for field in Settings.model_fields}
)
"""systemd hand-offs and hive-core's own settings; everything else reaches the harness."""


@dataclass
class _Child:
    proc: Process
    started_at: float
    expected_exit: bool = False


def harness_argv(role: str) -> list[str]:
    """The command line of a harness: this interpreter, so no PATH lookup is involved."""
    return [sys.executable, "-m", "hive_agent", "mind" if role == "manager" else "agent", "serve"]


def harness_env(base: Mapping[str, str], spec: AgentSpec) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in STRIPPED_ENV}
    env.update(
        HIVE_AGENT_NAME=spec.name,
        HIVE_ROLE=spec.role,
        HIVE_SOCKET=str(spec.socket),
        HIVE_HARNESS_SOCKET=str(spec.harness_socket),
        HIVE_STATE=str(spec.state_dir),
        HIVE_AGENT_CONFIG=str(spec.agent_dir / "applied" / "agent.toml"),
        # Empty: no extra MCP servers file. The default is the NixOS container's path, and
        # a host's own /etc/hyperhive/extra-mcp.json is no agent's config.
        HIVE_EXTRA_MCP_FILE="",
        HIVE_WEB_PORT=str(spec.web_port),
        HIVE_WEB_HOST=spec.web_host,
        HIVE_WEB_ALLOWED_HOSTS=",".join(spec.web_allowed_hosts),
        HIVE_OPERATOR_PRONOUNS=spec.operator_pronouns,
        HIVE_PARENT_PID=str(os.getpid()),
    )
    if spec.dashboard_url is not None:
        env["HIVE_DASHBOARD_URL"] = spec.dashboard_url
    return env


class LocalBackend:
    def __init__(self, env: Mapping[str, str], on_exit: ExitHook) -> None:
        self._env = dict(env)
        self._on_exit = on_exit
        self._children: dict[str, _Child] = {}
        self._tg: TaskGroup | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The group of the per-child exit watchers, until the daemon cancels it (after
        `shutdown` stopped every child)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def status(self, name: str) -> ContainerStatus:
        child = self._children.get(name)
        if child is None or child.proc.returncode is not None:
            return ContainerStatus(running=False)
        return ContainerStatus(running=True, pid=child.proc.pid, started_at=child.started_at)

    async def start(self, spec: AgentSpec) -> ContainerStatus:
        async with self._lock(spec.name):
            current = self.status(spec.name)
            if current.running:
                return current
            if self._tg is None:
                raise BackendError("the local backend is not running")
            try:
                log_fd = await anyio.to_thread.run_sync(_open_log, spec)
            except OSError as exc:
                raise BackendError(
                    f"cannot open the log of {spec.name} at {spec.log_path}: {exc.strerror}"
                ) from None
            try:
                proc = await anyio.open_process(
                    harness_argv(spec.role),
                    cwd=spec.state_dir,
                    env=harness_env(self._env, spec),
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise BackendError(f"could not start the harness of {spec.name}: {exc}") from None
            finally:
                os.close(log_fd)
            child = _Child(proc, time.time())
            self._children[spec.name] = child
            self._tg.start_soon(self._watch, spec.name, child, name=f"watch-{spec.name}")
            logger.info("started %s (pid %d)", spec.name, proc.pid)
            return ContainerStatus(running=True, pid=proc.pid, started_at=child.started_at)

    async def _watch(self, name: str, child: _Child) -> None:
        code = await child.proc.wait()
        logger.info("harness of %s (pid %d) exited with %d", name, child.proc.pid, code)
        if self._children.get(name) is child:
            del self._children[name]
        self._on_exit(name, child.proc.pid, code, child.expected_exit)

    async def stop(self, name: str) -> None:
        async with self._lock(name):
            await self._signal_and_wait(name, signal.SIGTERM, STOP_TIMEOUT)

    async def kill(self, name: str) -> None:
        async with self._lock(name):
            await self._signal_and_wait(name, signal.SIGKILL, STOP_TIMEOUT)

    async def _signal_and_wait(self, name: str, sig: signal.Signals, grace: float) -> None:
        child = self._children.get(name)
        if child is None or child.proc.returncode is not None:
            return
        child.expected_exit = True
        _signal_group(child.proc.pid, sig)
        with anyio.move_on_after(grace) as waited:
            await child.proc.wait()
        if waited.cancelled_caught:
            logger.warning("%s ignored %s for %.0fs; killing it", name, sig.name, grace)
            _signal_group(child.proc.pid, signal.SIGKILL)
            await child.proc.wait()

    async def shutdown(self) -> None:
        async with anyio.create_task_group() as tg:
            for name in list(self._children):
                tg.start_soon(self.stop, name)

    async def destroy(self, name: str) -> None:
        await self.stop(name)

    async def build(self, spec: AgentSpec, commit: str) -> None:
        """Nothing to build: the harness reads `applied/` when it starts."""

    async def finalize(self, spec: AgentSpec) -> None:
        """Nothing to move: the restart picks the new `applied/` up."""

    async def log_tail(self, spec: AgentSpec, lines: int) -> logfile.Tail:
        return await logfile.tail(spec.log_path, lines)

    async def log_read(self, spec: AgentSpec, offset: int) -> tuple[bytes, int]:
        return await logfile.read_from(spec.log_path, offset)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The harness leads its own session; signal the whole group so its children go too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _open_log(spec: AgentSpec) -> int:
    path = spec.log_path
    try:
        if path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_suffix(".log.1"))
    except FileNotFoundError:
        pass  # first start: no log to rotate yet
    return os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
