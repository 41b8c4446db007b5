"""The dashboard's reads, actions and event stream, over HTTP against a real daemon."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from hive_core.dashboard.streams import MAX_LOG_STREAMS, MAX_STREAMS
from hive_share import requests as rq
from hive_share import responses as rs
from tests.e2e.dashboard import (
    ACT_HEADERS,
    STREAM_BOUND,
    act,
    dashboard_port,
    log_in,
    login_url,
    session,
    stream,
    ticket,
)
from tests.e2e.hive import Hive

DRAIN_BOUND = 20.0


async def test_actions_answer_200_and_the_stream_carries_what_they_changed(hive: Hive) -> None:
    async with session(hive) as client, stream(client) as frames:
        first = (await client.get("/api/state")).json()
        done = await act(client, "/api/spawn", {"name": "alice"})
        assert done["ok"] is True and done["detail"].startswith("spawned alice")
        changed = await frames.until("container_state_changed", agent__name="alice")
        assert changed["seq"] > first["seq"]

        sent = await act(client, "/api/send", {"to": "alice", "body": "hello <b>alice</b>"})
        assert sent["ok"] is True and isinstance(sent["id"], int)
        frame = await frames.until("sent")
        assert frame["event"]["message"]["body"] == "hello <b>alice</b>"
        state = (await client.get("/api/state")).json()
        (row,) = [m for m in state["messages"] if m["id"] == sent["id"]]
        assert row["recipient"] == "alice" and row["state"] in ("queued", "leased", "delivered")

        await act(client, "/api/agents/alice/stop")
        await frames.until("container_state_changed", agent__name="alice", agent__state="stopped")
        await act(client, "/api/agents/alice/destroy")
        await frames.until("container_removed", name="alice")
        purged = await act(client, "/api/agents/alice/purge")
        assert purged["detail"] == "purged the tombstone of alice"


async def test_an_action_error_keeps_its_code_and_an_http_status(hive: Hive) -> None:
    async with session(hive) as client:
        for path, body, status, code in [
            ("/api/agents/zed/kill", {}, 404, "unknown_agent"),
            ("/api/agents/Bad Name/kill", {}, 400, "invalid_name"),
            ("/api/agents/alice/explode", {}, 404, "not_found"),
            ("/api/approvals/99/approve", {}, 404, "not_found"),
            ("/api/send", {"to": "alice"}, 400, "invalid_request"),
            ("/api/send", {"to": "alice", "body": "x", "extra": 1}, 400, "invalid_request"),
            ("/api/questions/9223372036854775808/answer", {"answer": "x"}, 400, "invalid_request"),
        ]:
            got = await client.post(path, content=json.dumps(body), headers=ACT_HEADERS)
            assert (got.status_code, got.json()["code"]) == (status, code), (path, got.text)
            assert got.json()["ok"] is False and got.json()["error"]


async def test_a_state_change_needs_the_session_the_header_json_and_our_origin(
    hive: Hive,
) -> None:
    port = dashboard_port(hive)
    body = json.dumps({"name": "mallory"})
    async with session(hive) as client:
        refused = {
            "no header": await client.post(
                "/api/spawn", content=body, headers={"Content-Type": "application/json"}
            ),
            "a form": await client.post(
                "/api/spawn", data={"name": "mallory"}, headers={"X-Hive-Request": "1"}
            ),
            "text/plain": await client.post(
                "/api/spawn", content=body,
                headers={"X-Hive-Request": "1", "Content-Type": "text/plain"},
            ),
            "foreign origin": await client.post(
                "/api/spawn", content=body, headers={**ACT_HEADERS, "Origin": "http://evil.test"}
            ),
            "same host, other port": await client.post(
                "/api/spawn", content=body,
                headers={**ACT_HEADERS, "Origin": f"http://127.0.0.1:{port + 1}"},
            ),
            "cross-site fetch": await client.post(
                "/api/spawn", content=body, headers={**ACT_HEADERS, "Sec-Fetch-Site": "cross-site"}
            ),
        }  # fmt: skip
        for what, got in refused.items():
            assert got.status_code == 403, what
        ours = await client.post(
            "/api/agents/hm1nd/rebuild", content="{}",
            headers={**ACT_HEADERS, "Origin": f"http://127.0.0.1:{port}",
                     "Sec-Fetch-Site": "same-origin"},
        )  # fmt: skip
        assert ours.status_code == 200, ours.text
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as anonymous:
        got = await anonymous.post("/api/spawn", content=body, headers=ACT_HEADERS)
        assert got.status_code == 401
        for path in ("/api/state", "/dashboard/stream", "/dashboard/history",
                     "/api/agents/hm1nd/log", "/api/agents/hm1nd/config"):  # fmt: skip
            assert (await anonymous.get(path)).status_code == 401, path
        foreign = await anonymous.post(
            "/api/spawn", content=body, headers={**ACT_HEADERS, "Host": "evil.test"}
        )
        assert foreign.status_code == 421
    names = {a["name"] for a in json.loads(hive.cli("list", "--json").stdout)}
    assert "mallory" not in names


async def test_history_pages_back_through_the_message_flow(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with hive.client() as host:
        ids = [
            (await host.call(rq.Send(cmd="send", to="alice", body=f"m{i}"), rs.Sent)).id
            for i in range(130)
        ]
    async with session(hive) as client:
        state = (await client.get("/api/state")).json()
        # hive-core's own notes (a login note to the operator, say) may fall among them.
        newest = [m["id"] for m in state["messages"]]
        assert len(newest) == 100 and state["more_messages"] is True
        older = (await client.get(f"/dashboard/history?before={newest[0]}&limit=100")).json()
        assert older["more"] is False and max(m["id"] for m in older["messages"]) < newest[0]
        mine = set(ids)
        pages = [m["id"] for m in older["messages"]] + newest
        assert [i for i in pages if i in mine] == ids
        assert {m["state"] for m in older["messages"] if m["id"] in mine} == {"queued"}
        for query in (
            "limit=0", "limit=101", "limit=abc", "limit=" + "9" * 30,
            "before=0", "before=9223372036854775808", "before=" + "9" * 5000,
            "before=abc", "before=", "before=1e3",
        ):  # fmt: skip
            bad = await client.get(f"/dashboard/history?{query}")
            assert bad.status_code == 400, (query, bad.text)
            assert bad.json()["code"] == "invalid_request", query
            assert bad.json()["error"].startswith(query.split("=")[0] + ": "), query


async def test_the_flow_shows_a_message_leased_then_delivered(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with session(hive) as client, stream(client, "sent,leased,delivered") as frames:
        sent = await act(client, "/api/send", {"to": "alice", "body": "take this"})
        await frames.until("sent")
        async with hive.client(hive.agent_sock("alice")) as alice:
            got = await alice.call(rq.Recv(cmd="recv", wait_seconds=5), rs.Messages)
            leased = await frames.until("leased", recipient="alice")
            assert leased["event"]["ids"] == [sent["id"]]
            state = (await client.get("/api/state")).json()
            assert [m["state"] for m in state["messages"] if m["id"] == sent["id"]] == ["leased"]
            await alice.call(rq.Ack(cmd="ack", ids=[m.id for m in got.messages]), rs.Acked)
        delivered = await frames.until("delivered", recipient="alice")
        assert delivered["event"]["ids"] == [sent["id"]]


async def test_a_stream_can_be_filtered_by_kind_and_refuses_unknown_kinds(hive: Hive) -> None:
    async with session(hive) as client:
        params = {"ticket": await ticket(client), "kinds": "sent,nonsense"}
        bad = await client.get("/dashboard/stream", params=params)
        assert bad.status_code == 400 and "nonsense" in bad.json()["error"]
        async with stream(client, "container_removed") as frames:
            hive.spawn_idle("alice")
            await act(client, "/api/spawn", {"name": "bob"})
            await act(client, "/api/agents/bob/destroy")
            frame = await frames.next()
            assert frame["event"] == {"kind": "container_removed", "name": "bob"}


async def test_an_agents_log_tail_follow_and_config(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    async with session(hive) as client:
        tail = (await client.get("/api/agents/alice/log?lines=5")).json()
        assert 0 < len(tail["lines"]) <= 5 and any("alice" in line for line in tail["lines"])
        assert (await client.get("/api/agents/alice/log?lines=0")).status_code == 400
        assert (await client.get("/api/agents/zed/log")).status_code == 404
        config = (await client.get("/api/agents/alice/config")).json()
        listed = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
        assert config["commit"] == listed["alice"]["deployed_commit"]
        assert "agent.toml" in config["files"]
        params = {"lines": "1", "ticket": await ticket(client)}
        async with client.stream("GET", "/api/agents/alice/log/stream", params=params) as follow:
            lines = follow.aiter_lines()
            first = await _data(lines)
            assert len(first["lines"]) == 1
            assert hive.cli("restart", "alice").returncode == 0  # writes to its log
            more = await _data(lines)
            assert more["lines"]


async def _data(lines: object) -> dict[str, list[str]]:
    async for line in lines:  # type: ignore[attr-defined]
        if line.startswith("data:"):
            got: dict[str, list[str]] = json.loads(line[5:])
            return got
    raise AssertionError("the log stream ended")


@pytest.mark.slow
async def test_a_subscriber_that_never_reads_is_cut_off_and_the_others_get_everything(
    hive: Hive,
) -> None:
    hive.spawn_idle("alice")
    port = dashboard_port(hive)
    body = "x" * 8_000
    count = 600
    async with session(hive) as client:
        stalled = _stalled_subscriber(port, await ticket(client))
        try:
            ready = [asyncio.Event() for _ in range(10)]
            async with asyncio.TaskGroup() as tg:
                readers = [tg.create_task(_collect(client, count, r)) for r in ready]
                for r in ready:
                    await r.wait()
                async with hive.client() as host:
                    for i in range(count):
                        await host.call(rq.Send(cmd="send", to="alice", body=f"{i}{body}"), rs.Sent)
            for reader in readers:
                got = reader.result()
                assert [int(m.split("x", 1)[0]) for m in got] == list(range(count))
            received = await asyncio.to_thread(_drain, stalled)
        finally:
            stalled.close()
    frames = received.count(b"data:")
    assert frames < count, "the stalled subscriber was never cut off"
    assert b'"kind":"resync"' in received or frames < count


def _stalled_subscriber(port: int, ticket: str) -> socket.socket:
    """A stream subscriber that reads its response head, then nothing at all."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /dashboard/stream?kinds=sent&ticket={ticket} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


async def _collect(client: httpx.AsyncClient, count: int, ready: asyncio.Event) -> list[str]:
    got: list[str] = []
    async with stream(client, "sent") as frames:
        ready.set()
        while len(got) < count:
            frame = await frames.next()
            got.append(frame["event"]["message"]["body"])
    return got


def _drain(sock: socket.socket) -> bytes:
    """Everything left for the stalled subscriber, until the server closes (bounded: a
    connection that stays open raises)."""
    deadline = time.monotonic() + DRAIN_BOUND
    data = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            raise AssertionError(
                f"the stalled subscriber is still connected after {data.count(b'data:')} frames"
            ) from None
        if not chunk:
            return data
        data += chunk


async def test_a_session_outlives_a_daemon_restart(hive: Hive) -> None:
    async with session(hive) as client:
        assert (await client.get("/api/state")).status_code == 200
        hive.stop()
        hive.start()
        client.base_url = httpx.URL(f"http://127.0.0.1:{dashboard_port(hive)}")
        assert (await client.get("/api/state")).status_code == 200


BROWSER_ACCEPT = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_a_used_login_code_is_refused_and_the_login_page_says_what_to_do(
    hive: Hive,
) -> None:
    """The login page's script shows the words of the case it meets (the browser tests
    follow it); the page holds them, and the code's trade answers why."""
    base = f"http://127.0.0.1:{dashboard_port(hive)}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as anonymous:
        url = login_url(hive)
        await log_in(anonymous, url)
        used = url.partition("code=")[2]
        again = await anonymous.post(
            "/api/session", content=json.dumps({"code": used}), headers=ACT_HEADERS
        )
        assert again.status_code == 403 and "hive-core login-link" in again.json()["error"]
        del anonymous.headers["Authorization"]
        for accept in (BROWSER_ACCEPT, {}):  # a page route: a page whatever it accepts
            got = await anonymous.get(url.removeprefix(base), headers=accept)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"].startswith("text/html")
            assert "this login link was used or has expired" in got.text
            assert "<code>hive-core login-link</code>" in got.text
            assert "set-cookie" not in got.headers
        api = await anonymous.get("/api/state", headers=BROWSER_ACCEPT)
        assert api.status_code == 401 and api.json()["code"] == "forbidden"
        missing = await anonymous.post("/api/session", content="{}", headers=ACT_HEADERS)
        assert missing.status_code == 400


async def test_an_event_stream_opens_with_a_one_use_ticket_only(hive: Hive) -> None:
    async with session(hive) as client:
        token = client.headers["Authorization"]
        assert (await client.get("/dashboard/stream")).status_code == 401  # the token alone
        used = await ticket(client)
        async with client.stream("GET", "/dashboard/stream", params={"ticket": used}) as first:
            assert first.status_code == 200
        second = await client.get("/dashboard/stream", params={"ticket": used})
        assert second.status_code == 401
        del client.headers["Authorization"]
        refused = await client.post("/api/ticket", content="{}", headers=ACT_HEADERS)
        assert refused.status_code == 401
        client.headers["Authorization"] = token
        no_header = await client.post(
            "/api/ticket", content="{}", headers={"Content-Type": "application/json"}
        )
        assert no_header.status_code == 403


async def test_a_foreign_host_gets_a_page_naming_it_and_the_setting_and_api_routes_json(
    hive: Hive,
) -> None:
    port = dashboard_port(hive)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for path in ("/", "/healthz"):
            got = await client.get(
                path, headers={**BROWSER_ACCEPT, "Host": f"Hive<b>.example:{port}"}
            )
            assert got.status_code == 421, path
            assert got.headers["content-type"].startswith("text/html"), path
            assert f"<code>hive&lt;b&gt;.example:{port}</code>" in got.text, got.text
            assert "<b>" not in got.text
            assert "add <code>hive&lt;b&gt;.example</code> to" in got.text
            assert "<code>HIVE_DASHBOARD_ALLOWED_HOSTS</code>" in got.text
            assert "restart hive-core" in got.text
            assert got.headers["content-security-policy"].startswith("default-src 'none'")
        wrong_port = await client.get("/", headers={**BROWSER_ACCEPT, "Host": "localhost:1"})
        assert wrong_port.status_code == 421
        assert f"answers on port {port}" in wrong_port.text
        for path, headers in [
            ("/api/state", BROWSER_ACCEPT),
            ("/dashboard/stream", BROWSER_ACCEPT),
            ("/dashboard/history", BROWSER_ACCEPT),
            ("/healthz", {}),  # a script's fetch: */*
            ("/healthz", {"Accept": "application/json"}),
        ]:
            got = await client.get(path, headers={**headers, "Host": "evil.test"})
            assert got.status_code == 421, path
            assert got.json() == {"error": "unexpected Host header"}, path


async def test_streams_past_the_cap_are_refused_and_a_closed_one_frees_its_place(
    hive: Hive,
) -> None:
    async with session(hive) as client:
        await _fill_then_free(client, "/dashboard/stream", MAX_STREAMS)


async def test_log_streams_have_a_cap_of_their_own(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with session(hive) as client:
        path = "/api/agents/alice/log/stream?lines=1"

        async def while_full() -> None:
            async with stream(client) as frames:  # the event streams' places are apart
                await act(client, "/api/send", {"to": "alice", "body": "still live"})
                await frames.until("sent")

        await _fill_then_free(client, path, MAX_LOG_STREAMS, while_full)


async def _fill_then_free(
    client: httpx.AsyncClient,
    path: str,
    cap: int,
    while_full: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Open `cap` streams at `path`: the next is refused (503 `busy`) until one closes."""
    limits = httpx.Limits(max_connections=cap + 8)
    async with httpx.AsyncClient(base_url=client.base_url, timeout=30, limits=limits) as many:

        async def open_one() -> httpx.Response:
            url = httpx.URL(path).copy_merge_params({"ticket": await ticket(client)})
            return await many.send(many.build_request("GET", url), stream=True)

        opened = await asyncio.gather(*(open_one() for _ in range(cap)))
        try:
            assert [r.status_code for r in opened] == [200] * cap
            refused = await open_one()
            try:
                assert refused.status_code == 503, "a stream past the cap was let through"
                assert json.loads(await refused.aread())["code"] == "busy"
            finally:
                await refused.aclose()
            if while_full is not None:
                await while_full()
            await opened.pop().aclose()
            # The server frees the place once it has seen the disconnect; each refused
            # attempt is a round trip of its own, so the retries pace themselves.
            async with asyncio.timeout(10):
                while (again := await open_one()).status_code != 200:
                    assert again.status_code == 503, again.status_code
                    await again.aclose()
            opened.append(again)
        finally:
            for r in opened:
                await r.aclose()


async def test_a_stopping_daemon_ends_each_stream_with_a_resync_frame(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with (
        session(hive) as client,
        client.stream(
            "GET", "/dashboard/stream", params={"ticket": await ticket(client)},
            timeout=STREAM_BOUND,
        ) as every,
        client.stream(
            "GET", "/dashboard/stream", params={"ticket": await ticket(client), "kinds": "sent"},
            timeout=STREAM_BOUND,
        ) as sent,
    ):  # fmt: skip
        streams = [_sse(every.aiter_lines()), _sse(sent.aiter_lines())]
        await act(client, "/api/send", {"to": "alice", "body": "the last one"})
        for events in streams:
            async for _, frame in events:
                if frame["event"]["kind"] == "sent":
                    break
        await asyncio.to_thread(hive.stop)
        for events in streams:
            rest = [event async for event in events]
            assert rest[-1] == (None, {"seq": 0, "event": {"kind": "resync"}})
            assert all(event_id == str(frame["seq"]) for event_id, frame in rest[:-1])


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """The SSE events of a stream, each as its `id` (None without one) and its data."""
    event_id: str | None = None
    data: dict[str, Any] | None = None
    async for line in lines:
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data = json.loads(line[5:])
        elif not line and data is not None:
            yield event_id, data
            event_id, data = None, None
        elif not line:
            event_id = None
