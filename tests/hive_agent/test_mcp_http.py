"""The MCP server over HTTP, as claude reaches it: a loopback port bound at the harness's
start, served once the server is built, only with the bearer secret, only for the
loopback's `Host`; the MCP config that names it is the owner's alone."""

from __future__ import annotations

import json
import stat
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import uvicorn

from hive_agent import invocation
from hive_agent.mcp_host import McpHost
from hive_share.agent_config import AgentConfig

BOUND = 30.0
ACCEPT = "application/json, text/event-stream"


@asynccontextmanager
async def _host(core: Path | None = None) -> AsyncIterator[McpHost]:
    """A real host (the SDK's server and app); its tools reach `core` (by default, no
    hive-core at all)."""
    with tempfile.TemporaryDirectory(prefix="hv", dir="/tmp") as tmp:
        async with anyio.create_task_group() as tasks:
            core = core or Path(tmp) / "no.sock"
            host = McpHost(Path(tmp) / "mcp.sock", "agent", core, print, tasks)
            try:
                with anyio.fail_after(BOUND):
                    await host.listen()
                    yield host
            finally:
                with anyio.CancelScope(shield=True), anyio.fail_after(BOUND):
                    assert await host.wind_down(BOUND)
                tasks.cancel_scope.cancel()


def _rpc(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


INITIALIZE = _rpc(
    "initialize",
    {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
)


async def _post(
    host: McpHost, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    assert host.endpoint is not None
    sent = {"accept": ACCEPT, **host.endpoint.headers, **(headers or {})}
    async with httpx.AsyncClient(timeout=BOUND) as client:
        return await client.post(host.endpoint.url, json=body, headers=sent)


async def test_the_port_is_bound_at_once_and_a_request_before_the_build_is_answered() -> None:
    async with _host() as host:
        assert host.endpoint is not None and not host.built
        assert host.endpoint.url.startswith("http://127.0.0.1:")
        await host.start()  # the build runs in the background; the request waits for it
        answer = await _post(host, INITIALIZE)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["serverInfo"]["name"] == "hyperhive"
        tools = await _post(host, _rpc("tools/list"))
        names = {t["name"] for t in tools.json()["result"]["tools"]}
        assert {"send", "recv", "whoami"} <= names


async def test_a_request_without_the_bearer_secret_is_refused_before_the_server() -> None:
    async with _host() as host:
        await host.start()
        assert host.endpoint is not None
        assert (await _post(host, INITIALIZE)).status_code == 200  # served by now
        for headers in ({"authorization": "Bearer not-the-secret"}, {"authorization": ""}):
            answer = await _post(host, INITIALIZE, headers)
            assert answer.status_code == 401
            assert "result" not in answer.text
        async with httpx.AsyncClient(timeout=BOUND) as client:
            bare = await client.post(host.endpoint.url, json=INITIALIZE, headers={"accept": ACCEPT})
        assert bare.status_code == 401


async def test_another_host_name_is_refused_even_with_the_secret() -> None:
    async with _host() as host:
        await host.start()
        answer = await _post(host, INITIALIZE, {"host": "attacker.example:80"})
        assert answer.status_code in (400, 403, 421)
        assert "result" not in answer.text


async def test_after_stop_the_port_serves_no_more() -> None:
    async with _host() as host:
        await host.start()
        assert (await _post(host, INITIALIZE)).status_code == 200
        host.stop()
        await host.http_ended.wait()
        with pytest.raises(httpx.ConnectError):
            await _post(host, INITIALIZE)


def test_the_mcp_config_names_the_endpoint_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    from hive_agent.mcp_http import Endpoint

    endpoint = Endpoint("http://127.0.0.1:4242/mcp", "s3cret")
    path = invocation.write_mcp_config(tmp_path, tmp_path / "mcp.sock", endpoint, AgentConfig())
    ours = json.loads(path.read_text())["mcpServers"]["hyperhive"]
    assert ours == {
        "type": "http",
        "url": "http://127.0.0.1:4242/mcp",
        "headers": {"Authorization": "Bearer s3cret"},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" not in repr(endpoint)


def test_without_a_port_claude_gets_the_relay(tmp_path: Path) -> None:
    path = invocation.write_mcp_config(tmp_path, tmp_path / "mcp.sock", None, AgentConfig())
    ours = json.loads(path.read_text())["mcpServers"]["hyperhive"]
    assert ours["env"] == {"HIVE_MCP_SOCKET": str(tmp_path / "mcp.sock")}
    assert "type" not in ours


async def test_ending_the_requests_ends_a_tool_call_and_its_connection_to_hive_core(
    tmp_path: Path,
) -> None:
    """A `recv` still waiting when its claude exits must not go on to take the next turn's
    messages: ending the requests cancels it, and its hive-core connection closes (which
    releases whatever it leased)."""
    called, closed = anyio.Event(), anyio.Event()

    async def silent_core(stream: anyio.abc.SocketStream) -> None:
        called.set()
        async with stream:
            try:
                while await stream.receive():  # never answers; reads until the tool hangs up
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                closed.set()

    core = tmp_path / "core.sock"
    listener = await anyio.create_unix_listener(core)
    async with listener, anyio.create_task_group() as serving:
        serving.start_soon(listener.serve, silent_core)
        async with _host(core) as host:
            await host.start()
            call = _rpc("tools/call", {"name": "recv", "arguments": {"wait_seconds": 60}})
            answers: list[httpx.Response] = []

            async def post() -> None:
                answers.append(await _post(host, call))

            async with anyio.create_task_group() as asking:
                asking.start_soon(post)
                await called.wait()
                host.end_requests()
            await closed.wait()
            assert answers[0].status_code == 503
        serving.cancel_scope.cancel()


async def test_a_listener_that_fails_hands_claude_the_relay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def broken(self: uvicorn.Server, sockets: object = None) -> None:
        raise RuntimeError("the port is gone")

    monkeypatch.setattr(uvicorn.Server, "serve", broken)
    async with _host() as host:
        bound = host.endpoint is not None
        await host.start()
        await host.http_ended.wait()
        assert bound
        assert host.endpoint is None  # the next run's config names the relay
        config = invocation.write_mcp_config(tmp_path, host.path, host.endpoint, AgentConfig())
        ours = json.loads(config.read_text())["mcpServers"]["hyperhive"]
        assert ours["env"] == {"HIVE_MCP_SOCKET": str(host.path)}
