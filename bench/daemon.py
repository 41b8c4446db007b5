"""A real `hive-core serve` in a throwaway directory: started, awaited via sd_notify, stopped.

Readiness is the daemon's own `READY=1` datagram on a `NOTIFY_SOCKET` we bind, so
the bench never sleeps-and-hopes. Shutdown is SIGTERM with a bounded wait.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import proc
from bench.report import note
from hive_core.db import wal_backlog

READY_TIMEOUT = 30.0
"""Seconds the daemon gets to send READY=1 (it starts the manager's harness first)."""
STOP_TIMEOUT = 30.0
"""Seconds it gets to exit after SIGTERM (drain 5 s, harness stop up to 10 s) before SIGKILL."""


AGENT_PORT_BASE = 20000
"""The bench's agents' pages take ports from here: away from a `./dev serve` hive's (42000
up), the tests' (24000–31999) and the soak's (19000 up)."""


class DaemonError(RuntimeError):
    """The daemon did not start, or did not stop cleanly."""


class Layout:
    """Where a daemon on `root` keeps things: `state/`, `run/` and its sockets."""

    root: Path

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    @property
    def host_socket(self) -> Path:
        return self.run_dir / "host.sock"

    def agent_socket(self, name: str) -> Path:
        return self.run_dir / "agents" / name / "agent.sock"

    def harness_socket(self, name: str) -> Path:
        """Where agent `name`'s harness answers `turn_status` and the other controls."""
        return self.run_dir / "agents" / name / "harness.sock"


@dataclass
class Daemon(Layout):
    proc: subprocess.Popen[bytes]
    root: Path
    started: float = 0.0
    """`time.perf_counter()` just before the process was spawned."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wal_bytes(self) -> int:
        try:
            return (self.state_dir / "hive.sqlite-wal").stat().st_size
        except FileNotFoundError:
            return 0

    def wal_backlog(self) -> int:
        """WAL frames not yet folded into hive.sqlite (read from its `-shm` WAL index)."""
        return wal_backlog(self.state_dir / "hive.sqlite")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon process (all its threads, not its children)."""
        return proc.cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        """The daemon's resident memory (`VmRSS`)."""
        return proc.rss_bytes(self.pid)

    def log_tail(self, max_bytes: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError as exc:
            return f"(log unreadable: {exc.strerror})"
        return data[-max_bytes:].decode(errors="replace").strip() or "(empty log)"

    def stop(self) -> None:
        """SIGTERM and wait (bounded); SIGKILL if it hangs. Idempotent."""
        if self.proc.poll() is not None:
            return
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            note(f"hive-core ignored SIGTERM for {STOP_TIMEOUT:.0f}s and was killed")
            return
        took = time.monotonic() - started
        if code != 0:
            note(f"hive-core exited with {code} after SIGTERM; log tail:\n{self.log_tail()}")
        else:
            note(f"hive-core stopped {took:.2f}s after SIGTERM")


def _daemon_env(root: Path, notify_path: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["HIVE_AGENT_PORT_BASE"] = str(AGENT_PORT_BASE)  # the soak sets its own
    env.update(extra)
    env.update(
        HIVE_STATE_DIR=str(root / "state"),
        HIVE_RUN_DIR=str(root / "run"),
        HIVE_BACKEND="local",
        HIVE_DASHBOARD_PORT="0",
        NOTIFY_SOCKET=str(notify_path),
    )
    return env


def _wait_ready(notify: socket.socket, daemon: Daemon, timeout: float) -> None:
    """Block until READY=1 arrives, the process exits, or `timeout` passes.

    Raises:
        DaemonError: it exited or stayed silent; the message quotes its log.
    """
    pidfd = os.pidfd_open(daemon.pid)
    try:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([notify.fileno(), pidfd], [], [], remaining)
            if notify.fileno() in readable:
                states = notify.recv(4096).decode(errors="replace").splitlines()
                if "READY=1" in states:
                    return
            elif pidfd in readable:
                code = daemon.proc.wait()
                raise DaemonError(
                    f"hive-core exited with {code} while starting:\n{daemon.log_tail()}"
                )
        raise DaemonError(f"hive-core sent no READY=1 within {timeout:.0f}s:\n{daemon.log_tail()}")
    finally:
        os.close(pidfd)


@contextmanager
def launched(root: Path, extra_env: Mapping[str, str]) -> Iterator[tuple[Daemon, socket.socket]]:
    """`hive-core serve` started on `root`'s `state/` and `run/`, not yet awaited, with the
    bound `NOTIFY_SOCKET` it will report on; stopped (bounded) on exit. `root` is kept.

    `extra_env` is added to its environment (and so reaches the harnesses it starts,
    e.g. `HIVE_CLAUDE_BIN`); it cannot override the state and run dirs.
    """
    notify_path = root / "notify"
    notify_path.unlink(missing_ok=True)  # left by an earlier start on the same root
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
        notify.bind(str(notify_path))
        # Kept bound until the daemon has exited: it also sends STOPPING=1.
        with open(root / "daemon.log", "wb") as log:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "hive_core", "serve"],
                cwd=root,
                env=_daemon_env(root, notify_path, extra_env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        daemon = Daemon(proc, root, started)
        try:
            yield daemon, notify
        finally:
            daemon.stop()


def wait_ready(daemon: Daemon, notify: socket.socket) -> None:
    """Block until the daemon's READY=1 (bounded by `READY_TIMEOUT`).

    Raises:
        DaemonError: it exited or stayed silent.
    """
    _wait_ready(notify, daemon, READY_TIMEOUT)


@contextmanager
def running_daemon(extra_env: Mapping[str, str] | None = None) -> Iterator[Daemon]:
    """A ready daemon in a fresh `/tmp/hb…` dir; stopped and removed on exit.

    Raises:
        DaemonError: it did not become ready.
    """
    # Short on purpose: agent socket paths must fit in sun_path (107 bytes).
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="hb"))
    try:
        with launched(root, extra_env or {}) as (daemon, notify):
            wait_ready(daemon, notify)
            took = time.perf_counter() - daemon.started
            note(f"hive-core (pid {daemon.pid}) ready in {took:.2f}s")
            yield daemon
    finally:
        shutil.rmtree(root, ignore_errors=True)
