"""Talking to a real daemon's dashboard as a browser would: log in, read, act, stream."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.e2e.hive import Hive

ACT_HEADERS = {"X-Hive-Request": "1", "Content-Type": "application/json"}
STREAM_BOUND = 30.0


def dashboard_port(hive: Hive) -> int:
    return int((hive.run_dir / "dashboard.port").read_text())


def login_url(hive: Hive) -> str:
    link = hive.cli("login-link")
    assert link.returncode == 0, link.stderr
    match = re.search(r"http://\S+/login\?code=[\w-]+", link.stdout)
    assert match is not None, link.stdout
    return match.group(0)


async def log_in(client: httpx.AsyncClient, url: str) -> str:
    """Trade a login link's code as the login page's script does; returns the session
    token, which `client` then sends as `Authorization: Bearer` on every request."""
    code = url.partition("code=")[2]
    got = await client.post("/api/session", content=json.dumps({"code": code}), headers=ACT_HEADERS)
    assert got.status_code == 200, got.text
    token: str = got.json()["token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return token


@asynccontextmanager
async def session(hive: Hive) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client logged in to the dashboard (its session token in every request)."""
    base = f"http://127.0.0.1:{dashboard_port(hive)}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await log_in(client, login_url(hive))
        yield client


async def ticket(client: httpx.AsyncClient) -> str:
    """A one-use event-stream ticket, as the page's script fetches one."""
    got = await client.post("/api/ticket", content="{}", headers=ACT_HEADERS)
    assert got.status_code == 200, got.text
    value: str = got.json()["ticket"]
    return value


async def act(client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST an action as the page does; returns the JSON answer of a 200."""
    got = await client.post(path, content=json.dumps(body or {}), headers=ACT_HEADERS)
    assert got.status_code == 200, got.text
    return got.json()


class Frames:
    """An open `/dashboard/stream`: frames parsed from the SSE `data:` lines."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines

    async def next(self) -> dict[str, Any]:
        async for line in self._lines:
            if line.startswith("data:"):
                frame: dict[str, Any] = json.loads(line[5:].strip())
                return frame
        raise AssertionError("the event stream ended")

    async def until(self, kind: str, **match: Any) -> dict[str, Any]:
        """The next frame of `kind` whose event has `match`'s values, a dotted key reaching
        into nested objects (`agent__state="stopped"`); bounded by the client's timeout."""
        while True:
            frame = await self.next()
            event = frame["event"]
            if event["kind"] == kind and all(_at(event, k) == v for k, v in match.items()):
                return frame


def _at(event: dict[str, Any], key: str) -> Any:
    value: Any = event
    for part in key.split("__"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@asynccontextmanager
async def stream(client: httpx.AsyncClient, kinds: str = "") -> AsyncIterator[Frames]:
    params = {"ticket": await ticket(client), **({"kinds": kinds} if kinds else {})}
    async with client.stream(
        "GET", "/dashboard/stream", params=params, timeout=STREAM_BOUND
    ) as response:
        assert response.status_code == 200, await response.aread()
        yield Frames(response.aiter_lines())
