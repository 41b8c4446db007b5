"""What an idle harness holds (docs/turn-loop.md, "What an idle harness holds"): started as the
backends start it (`python -m hive_agent agent serve`) against a stand-in hive-core, it
imports neither typer, nor the MCP SDK, nor the agent page's web stack while it waits; each
comes in, and works, the moment something asks for it.

The harness runs with `-X importtime`, which writes a line to stderr for every module
imported; the tests read that log once the harness has exited.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hive_agent.core_standin import BOUND, StandInCore, standing_in

HEAVY = frozenset({"typer", "click", "mcp", "mcp_types", "fastapi", "starlette", "uvicorn"})
"""Packages an idle harness does without."""


@dataclass
class Harness:
    proc: subprocess.Popen[bytes]
    core: StandInCore
    harness_socket: Path
    mcp_socket: Path
    port: int
    log: Path

    def stop(self) -> set[str]:
        """SIGTERM, wait for the exit; the modules it imported in its life."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(BOUND) == 0, self.log.read_text()[-2000:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return imported(self.log)

    def control(self, request: dict[str, object]) -> dict[str, object]:
        """One request on harness.sock, its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(BOUND)
            sock.connect(str(self.harness_socket))
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer: dict[str, object] = json.loads(sock.makefile("rb").readline())
            return answer

    def page(self, method: str, path: str, body: str | None = None) -> int:
        """One request to the agent page; its status."""
        page = http.client.HTTPConnection("127.0.0.1", self.port, timeout=BOUND)
        try:
            headers = {"X-Hive-Request": "1", "Content-Type": "application/json"}
            page.request(method, path, body, headers if body is not None else {})
            return page.getresponse().status
        finally:
            page.close()


def imported(log: Path) -> set[str]:
    """The modules named in an `-X importtime` log."""
    names = set()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("import time:") and not line.endswith("| imported package"):
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def harness() -> Iterator[Harness]:
    with _idle_harness() as running:
        yield running


@contextmanager
def _idle_harness() -> Iterator[Harness]:
    """A harness up, and parked in its long-poll (it has started all it starts by itself)."""
    root = Path(tempfile.mkdtemp(prefix="hv", dir="/tmp"))  # short: socket paths
    state = root / "state"
    state.mkdir()
    claude = root / "claude"
    claude.write_text("#!/bin/sh\nexit 1\n")  # never run: no turn comes
    claude.chmod(0o755)
    run = root / "run"
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(root),
        "ANTHROPIC_API_KEY": "sk-test",  # counts as logged in: no `claude auth status`
        "HIVE_AGENT_NAME": "alice",
        "HIVE_SOCKET": str(root / "agent.sock"),
        "HIVE_HARNESS_SOCKET": str(run / "harness.sock"),
        "HIVE_STATE": str(state),
        "HIVE_EXTRA_MCP_FILE": "",
        "HIVE_WEB_PORT": str(port),
        "HIVE_CLAUDE_BIN": str(claude),
        "HIVE_PARENT_PID": str(os.getpid()),
    }
    log = root / "harness.log"
    argv = [sys.executable, "-X", "importtime", "-m", "hive_agent", "agent", "serve"]
    try:
        with standing_in(root / "agent.sock") as core, open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=state, env=env, stdout=out, stderr=out)
            running = Harness(proc, core, run / "harness.sock", run / "mcp.sock", port, log)
            try:
                core.wait_for(
                    lambda c: any(r.get("wait_seconds") for r in c.seen("recv")),
                    "the harness's long-poll",
                )
                yield running
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_an_idle_harness_imports_neither_typer_nor_the_mcp_sdk_nor_the_web_stack(
    harness: Harness,
) -> None:
    modules = harness.stop()

    assert {"pydantic", "anyio", "hive_agent.serve"} <= modules  # the log is read right
    assert heavy(modules) == set()


def test_the_page_is_built_by_its_first_connection_and_answers_it(harness: Harness) -> None:
    assert harness.page("GET", "/api/state") == 401  # no session: but the page answered

    modules = harness.stop()
    assert "fastapi" in modules
    assert "mcp" not in modules


def test_a_login_code_builds_the_page_and_the_code_logs_in(harness: Harness) -> None:
    code = "c" * 32
    answer = harness.control({"cmd": "web_code", "code": code, "send_token": None})
    assert answer["ok"] is True, answer

    assert harness.page("POST", "/api/session", json.dumps({"code": code})) == 200
    assert "mcp" not in harness.stop()


def test_an_mcp_session_before_any_turn_waits_for_the_server_and_is_answered(
    harness: Harness,
) -> None:
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}},
    }  # fmt: skip
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(BOUND)
        sock.connect(str(harness.mcp_socket))  # listening already, without the SDK
        sock.sendall(json.dumps(initialize).encode() + b"\n")
        reply = json.loads(sock.makefile("rb").readline())

    assert reply["id"] == 1
    assert reply["result"]["serverInfo"]["name"] == "hyperhive"
    assert "mcp" in harness.stop()
