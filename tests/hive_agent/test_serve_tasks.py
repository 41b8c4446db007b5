"""A harness that stops leaves nothing running behind it: `serve` returns with no other task
of the event loop left, whatever it was doing when the SIGTERM came.

The harness runs in this test's own event loop against a stand-in for hive-core's agent
socket, which answers from threads of its own (so none of its work is a task of the loop
under test). Mid-turn, claude is a stand-in that ignores SIGINT; a control long-poll, an MCP
session and a connection to the agent page are held open when the SIGTERM comes.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from hive_agent.claude import CANCEL_GRACE
from hive_agent.serve import serve
from hive_agent.settings import HarnessSettings
from hive_share import framing
from hive_share import responses as rs
from hive_share.models import Message

BOUND = 30.0
"""Seconds any one step may take."""
PROBE_ENV = "HIVE_TEST_CLAUDE_STARTED"
"""Where the stand-in claude writes its pid once it runs (a FIFO)."""

STUBBORN_CLAUDE = f"""#!/bin/sh
trap '' INT
echo "$$" > "${PROBE_ENV}"
exec sleep 600
"""


class _Core(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, inbox: list[Message]) -> None:
        super().__init__(str(path), _CoreConnection)
        self.inbox = inbox
        self.alive = threading.Event()
        self.long_poll = threading.Event()
        """Set when the harness's `recv` waits on an empty inbox."""


class _CoreConnection(socketserver.StreamRequestHandler):
    """hive-core's agent socket as one harness uses it: `alive`, `recv` (a long-poll that
    ends when the harness hangs up), `ack`, `turn_slot`, the state reports and
    `get_open_threads`."""

    server: _Core

    def handle(self) -> None:
        for line in self.rfile:
            req = json.loads(line)
            answer = self._answer(req)
            if answer is None:
                return
            self.wfile.write(framing.encode_model(answer))

    def _answer(self, req: dict[str, Any]) -> Any:
        core = self.server
        match req["cmd"]:
            case "alive":
                core.alive.set()
                return rs.Done(detail="welcome")
            case "recv":
                if core.inbox and req.get("wait_seconds"):
                    batch, core.inbox[:] = list(core.inbox), []
                    return rs.Messages(messages=batch)
                if not req.get("wait_seconds"):
                    return rs.Messages(messages=[])
                core.long_poll.set()
                select.select([self.connection], [], [], req["wait_seconds"])
                return None  # the harness hung up (or the wait ran out: it asks again)
            case "ack":
                return rs.Acked(count=len(req["ids"]))
            case "turn_state" | "login_state" | "set_status":
                return rs.Done(detail="noted")
            case "turn_slot":
                return rs.TurnSlotState(granted=True, running=1, slots=4)
            case "get_open_threads":
                return rs.OpenThreads(approvals=[], questions=[], pending_reminders=0)
        return rs.Error(code="unknown_verb", error=req["cmd"])


@dataclass
class Rig:
    root: Path
    settings: HarnessSettings
    env: dict[str, str]
    core: _Core
    started: int
    """A FIFO the stand-in claude writes its pid to, held open for reading and writing."""
    held: list[socket.socket] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    """Which of the held connections the harness closed."""

    def claude_pid(self) -> int:
        ready, _, _ = select.select([self.started], [], [], BOUND)
        assert ready, "the stand-in claude never started"
        return int(os.read(self.started, 64).decode().strip())

    def hold(self, sock: socket.socket, request: bytes, what: str) -> None:
        """Send `request` on `sock`, wait for the start of its answer, keep it open."""
        sock.settimeout(BOUND)
        sock.sendall(request)
        assert sock.recv(65536), f"{what}: no answer"
        self.held.append(sock)

    def control(self, *requests: dict[str, Any]) -> socket.socket:
        """A connection to harness.sock on which each request was answered."""
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(self.settings.harness_socket))
        sock.settimeout(BOUND)
        reader = sock.makefile("rb")
        for req in requests:
            sock.sendall(json.dumps(req).encode() + b"\n")
            assert json.loads(reader.readline())["ok"], req
        return sock

    def wait_closed(self) -> None:
        for name, sock in zip(("control", "mcp", "page"), self.held, strict=False):
            try:
                while sock.recv(65536):
                    pass
                self.closed.append(name)
            except TimeoutError:
                pass
            finally:
                sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def rig() -> Iterator[Rig]:
    root = Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))  # short: socket paths
    state = root / "state"
    state.mkdir()
    claude = root / "claude"
    claude.write_text(STUBBORN_CLAUDE)
    claude.chmod(0o755)
    fifo = root / "started"
    os.mkfifo(fifo)
    started = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # never blocks: we hold a writer too
    settings = HarnessSettings(
        agent_name="alice",
        socket=root / "agent.sock",
        harness_socket=root / "run" / "harness.sock",
        state=state,
        web_port=_free_port(),
        claude_bin=str(claude),
        extra_mcp_file=None,
    )
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(root),
        "ANTHROPIC_API_KEY": "sk-test",  # counts as logged in: no `claude auth status`
        PROBE_ENV: str(fifo),
    }
    core = _Core(settings.socket, [])
    serving = threading.Thread(target=core.serve_forever, daemon=True)
    serving.start()
    r = Rig(root, settings, env, core, started)
    try:
        yield r
    finally:
        core.shutdown()
        core.server_close()
        serving.join(BOUND)
        for sock in r.held:
            sock.close()
        os.close(started)
        shutil.rmtree(root, ignore_errors=True)


async def _serve_until_stopped(rig: Rig, drive: Any) -> None:
    """Run the harness here while `drive` (in a thread) brings it where the test wants it
    and sends SIGTERM; fails if the harness has not returned within the bound."""
    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    with anyio.fail_after(BOUND * 2):
        await serve(rig.settings, rig.env)
    await anyio.to_thread.run_sync(driver.join, BOUND)
    assert not driver.is_alive()


def _left_behind() -> list[str]:
    """The loop's tasks other than this test's own."""
    return sorted(repr(t) for t in asyncio.all_tasks() - {asyncio.current_task()})


def _gone(pid: int) -> bool:
    try:
        os.close(os.pidfd_open(pid))
    except ProcessLookupError:
        return True
    return False


async def test_a_harness_stopped_while_idle_leaves_no_task_behind(rig: Rig) -> None:
    def drive() -> None:
        assert rig.core.long_poll.wait(BOUND), "the harness never waited on its inbox"
        rig.held.append(rig.control({"cmd": "ping"}))
        rig.held[0].sendall(b'{"cmd":"turn_status","after_turns":1000,"wait_seconds":170}\n')
        os.kill(os.getpid(), signal.SIGTERM)
        rig.wait_closed()

    await _serve_until_stopped(rig, drive)

    assert _left_behind() == []
    assert rig.closed == ["control"]
    assert not rig.settings.harness_socket.exists()


async def test_a_harness_stopped_mid_turn_leaves_no_task_or_process_behind(rig: Rig) -> None:
    rig.core.inbox.append(
        Message(id=1, sender="operator", recipient="alice", body="work", sent_at=time.time())
    )
    mcp_socket = rig.settings.harness_socket.with_name("mcp.sock")
    pids: list[int] = []

    def drive() -> None:
        pids.append(rig.claude_pid())  # the turn runs claude, after the MCP host started
        # A control long-poll, and the page (built once the code is taken, serving one
        # request later).
        code = {"cmd": "web_code", "code": "x" * 32, "send_token": None}
        control = rig.control({"cmd": "ping"}, code, {"cmd": "ping"})
        rig.hold(control, b'{"cmd":"ping"}\n', "control")
        control.sendall(b'{"cmd":"turn_status","after_turns":1000,"wait_seconds":170}\n')
        mcp = socket.socket(socket.AF_UNIX)
        mcp.connect(str(mcp_socket))
        initialize = {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}},
        }  # fmt: skip
        rig.hold(mcp, json.dumps(initialize).encode() + b"\n", "mcp")
        page = socket.create_connection(("127.0.0.1", rig.settings.web_port), BOUND)
        host = f"127.0.0.1:{rig.settings.web_port}"
        rig.hold(page, f"GET /api/state HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), "page")
        sigterm.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)
        rig.wait_closed()

    sigterm: list[float] = []
    await _serve_until_stopped(rig, drive)
    took = time.monotonic() - sigterm[0]

    assert _left_behind() == []
    assert rig.closed == ["control", "mcp", "page"]
    assert _gone(pids[0]), "claude outlived the harness"
    assert not rig.settings.harness_socket.exists() and not mcp_socket.exists()
    # claude ignores SIGINT: the stop killed it rather than wait out the cancel's grace.
    assert took < CANCEL_GRACE, f"the stop took {took:.1f}s"
