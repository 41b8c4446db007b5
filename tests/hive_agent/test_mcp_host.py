"""The MCP host's start: it listens at once, builds the server (the SDK's import) in the
background while the first turn's claude starts, and a later turn that finds that build
still under way waits for it. The build here is a stand-in a test releases."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from hive_agent.mcp_host import McpHost

BOUND = 30.0


class HeldBuild:
    """A build that blocks its thread until released; the first `failing` builds fail."""

    def __init__(self, failing: int = 0) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.failing = failing

    def __call__(self) -> Any:
        self.calls += 1
        assert self.release.wait(BOUND), "the build was never released"
        if self.calls <= self.failing:
            raise RuntimeError("the SDK is broken")
        return object(), None  # the server, and no HTTP server to run


@asynccontextmanager
async def _host(build: Callable[[], Any]) -> AsyncIterator[McpHost]:
    with tempfile.TemporaryDirectory(prefix="hv", dir="/tmp") as tmp:  # short: socket path
        async with anyio.create_task_group() as tasks:
            host = McpHost(Path(tmp) / "mcp.sock", "agent", Path(tmp) / "no.sock", print, tasks)
            host._build = build  # type: ignore[method-assign]
            try:
                with anyio.fail_after(BOUND):
                    yield host
            finally:
                if isinstance(build, HeldBuild):
                    build.release.set()  # a thread left waiting would hold the group open
                tasks.cancel_scope.cancel()


async def test_the_first_start_listens_at_once_and_builds_in_the_background() -> None:
    build = HeldBuild()
    async with _host(build) as host:
        await host.start()  # returns with the build still held

        built_at_once = host.built
        assert host.path.is_socket()
        assert not built_at_once
        build.release.set()
        await host.start()  # waits for the build under way
        assert host.built
        assert build.calls == 1


async def test_a_start_that_finds_a_build_under_way_waits_for_it() -> None:
    build = HeldBuild()
    async with _host(build) as host:
        await host.start()
        second = anyio.Event()

        async def next_turn() -> None:
            await host.start()
            second.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(next_turn)
            await anyio.wait_all_tasks_blocked()
            assert not second.is_set()
            build.release.set()
        assert host.built
        assert build.calls == 1


async def test_a_failed_build_is_logged_and_the_next_start_builds_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    build = HeldBuild(failing=1)
    async with _host(build) as host:
        await host.start()
        build.release.set()
        await host.start()  # waits for the failing build, then starts another
        assert "the MCP server could not be built" in caplog.text

        await host.start()  # waits for that one, if it is still under way
        assert host.built
        assert build.calls == 2
