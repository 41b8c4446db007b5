"""A real `hive-core serve` process in a short temp dir, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from hive_core.ports import PORT_RANGE
from hive_share.client import HiveClient

READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0


AGENT_PORT_BASE = 31000 - PORT_RANGE * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
"""Each pytest-xdist worker's hives give their agents' pages ports of their own, below the
default range (42000 up: a `./dev serve` hive's agents hold ports there) and the kernel's
ephemeral ports (32768 up: the tests' own connections and dashboards)."""


class Hive:
    """One daemon's directories and process; start/stop/kill it as often as needed."""

    def __init__(self, root: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.state_dir = root / "s"
        self.run_dir = root / "r"
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "daemon.log"
        self._notify_path = root / "n"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self._notify_path))
        self._notify.settimeout(READY_TIMEOUT)
        self.status: str | None = None
        """The last `STATUS=` line the daemon sent (read as the notifications are)."""

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # pytest-xdist's workers export COLUMNS=80; the CLI fits `list` to $COLUMNS, and a
        # test reads what a pipe gets (a test that wants a width sets it).
        env.pop("COLUMNS", None)
        env.update(
            HIVE_STATE_DIR=str(self.state_dir),
            HIVE_RUN_DIR=str(self.run_dir),
            NOTIFY_SOCKET=str(self._notify_path),
            HIVE_DASHBOARD_PORT="0",
            HIVE_AGENT_PORT_BASE=str(AGENT_PORT_BASE),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    @property
    def host_sock(self) -> Path:
        return self.run_dir / "host.sock"

    @property
    def manager_sock(self) -> Path:
        return self.run_dir / "manager.sock"

    def agent_sock(self, name: str) -> Path:
        return self.run_dir / "agents" / name / "agent.sock"

    def harness_sock(self, name: str) -> Path:
        return self.run_dir / "agents" / name / "harness.sock"

    def start(self, stdout: int | None = None, *, ready: bool = True) -> None:
        """Start the daemon and block until it notifies READY=1 (bounded); with
        `ready=False`, return at once (`wait_for_notify("READY=1")` waits later).

        Its stdout (the banner) goes to the log, or to the descriptor `stdout` (a pty, say).
        """
        assert self.proc is None or self.proc.poll() is not None
        self.status = None
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hive_core", "serve"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log if stdout is None else stdout,
            stderr=log,
        )
        log.close()
        if ready:
            self.wait_for_notify("READY=1")

    def wait_for_notify(self, state: str) -> None:
        while True:
            try:
                data = self._notify.recv(4096)
            except TimeoutError:
                raise AssertionError(
                    f"daemon never sent {state}; log:\n{self.log()[-3000:]}"
                ) from None
            self._note_status(data)
            if state.encode() in data.split(b"\n"):
                return

    def drain_notify(self) -> None:
        """Note every notification waiting now, without waiting: the kernel queues only a
        few datagrams, and the daemon drops a status line it cannot queue."""
        self._notify.setblocking(False)
        try:
            while True:
                try:
                    data = self._notify.recv(4096)
                except BlockingIOError:
                    return
                self._note_status(data)
        finally:
            self._notify.settimeout(READY_TIMEOUT)

    def _note_status(self, data: bytes) -> None:
        for line in data.decode(errors="replace").split("\n"):
            if line.startswith("STATUS="):
                self.status = line.removeprefix("STATUS=")

    def wait_for_status(self, holds: Callable[[str], bool], what: str) -> str:
        """Read the daemon's notifications until a `STATUS=` line for which `holds` is true
        (bounded by the socket's timeout); returns that line."""
        while self.status is None or not holds(self.status):
            try:
                data = self._notify.recv(4096)
            except TimeoutError:
                raise AssertionError(
                    f"daemon's status never showed {what}; the last was {self.status!r}; "
                    f"log:\n{self.log()[-3000:]}"
                ) from None
            self._note_status(data)
        return self.status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM and wait (bounded); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=EXIT_TIMEOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=EXIT_TIMEOUT)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `hive-core ARGS` against this daemon."""
        return subprocess.run(
            [sys.executable, "-m", "hive_core", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def spawn_idle(self, *names: str) -> None:
        """Spawn agents, then stop their harnesses: the socket stays, and the test is the agent."""
        for name in names:
            for verb in ("spawn", "stop"):
                result = self.cli(verb, name)
                assert result.returncode == 0, result.stderr

    def client(self, path: Path | None = None) -> HiveClient:
        return HiveClient(path or self.host_sock)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self._notify.close()


@contextmanager
def running_hive(extra_env: Mapping[str, str] | None = None) -> Iterator[Hive]:
    """A running daemon in its own temp dirs, stopped and removed afterwards."""
    root = short_tmp()
    h = Hive(root, extra_env)
    try:
        h.start()
        yield h
    finally:
        h.close()
        shutil.rmtree(root, ignore_errors=True)


def short_tmp() -> Path:
    """A temp dir short enough for unix socket paths."""
    return Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))


async def wait_until_dead(pid: int, bound: float = 15.0) -> None:
    """Wait for a process we did not start to disappear (pidfd, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    loop.add_reader(fd, gone.set)
    try:
        async with asyncio.timeout(bound):
            await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)
