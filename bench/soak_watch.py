"""The soak's dashboard clients, in a process of their own so that the runner's work never
delays what they measure: `LIVE` clients follow `/dashboard/stream` as the page does
(login token → one-use ticket → stream) and time `/api/state` fetches at a modest pace, and
one stalled client opens a stream and never reads it.

The runner talks to the process over a pipe: `("up", port, token, epoch)` once a daemon is
ready, `("down",)` before it is stopped, `("stop",)` at the end; the process answers with
`("delivered", ids)` as the first client sees acknowledgements, and `("result",
WatchResult)` when told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httpx

from bench.soak_account import Frame

LIVE = 4
STATE_EVERY = (2.0, 4.0)
"""Seconds between one live client's `/api/state` fetches (uniform): about 1.3 fetches/s
from the four together."""
STALLED_RCVBUF = 4096
STALLED_REOPEN = 150.0
"""The stalled client opens a new stream this often (and after a restart): the daemon cuts
one that stays stalled once the socket's buffers and the stream's queue are full, which
takes a minute or two at the soak's pace, and the next one takes its place."""
RETRY_PAUSE = 0.5
"""A live client whose stream failed while its daemon is up tries again after this."""
ACT = {"X-Hive-Request": "1", "Content-Type": "application/json"}
FINISH_TIMEOUT = 30.0


@dataclass
class ClientResult:
    lags: list[tuple[float, float]] = field(default_factory=list)
    """(arrival, seconds) of every `sent` and `delivered` frame: arrival minus the event's
    own time (the message's `sent_at`, the ack's `delivered_at`)."""
    states: list[tuple[float, float]] = field(default_factory=list)
    """(start, seconds) of every `/api/state` fetch that answered 200."""
    state_errors: int = 0
    connects: int = 0
    resyncs: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class WatchResult:
    clients: list[ClientResult]
    frames: list[Frame]
    """The first client's `sent` and `container_state_changed` frames, in arrival order."""
    stalled_opened: int = 0
    stalled_errors: list[str] = field(default_factory=list)


class _Ctx:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.up = asyncio.Event()
        self.stopping = asyncio.Event()
        self.changed = asyncio.Event()
        """Set (and replaced) whenever the daemon comes up, goes down, or the run ends."""
        self.port = 0
        self.token = ""
        self.epoch = 0
        self._send = threading.Lock()

    def handle(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "up":
            _, self.port, self.token, self.epoch = msg
            self.up.set()
        elif msg[0] == "down":
            self.up.clear()
        else:
            self.stopping.set()
            self.up.set()
        self.changed.set()
        self.changed = asyncio.Event()

    def tell(self, msg: tuple[Any, ...]) -> None:
        with self._send:
            self.conn.send(msg)


def _note(res: ClientResult | WatchResult, exc: BaseException) -> None:
    errors = res.errors if isinstance(res, ClientResult) else res.stalled_errors
    if len(errors) < 20:
        errors.append(f"{time.time():.3f} {type(exc).__name__}: {exc}"[:300])


def _frame(line: str, at: float, epoch: int) -> tuple[str, dict[str, Any], Frame | None]:
    """(kind, event, what the timeline keeps of it)."""
    frame = json.loads(line[5:])
    event: dict[str, Any] = frame["event"]
    kind = str(event["kind"])
    seq = int(frame.get("seq", 0))
    if kind == "sent":
        m = event["message"]
        return kind, event, Frame(epoch, seq, at, "sent", m["recipient"], m["id"],
                                  m["sender"], m["sent_at"])  # fmt: skip
    if kind == "container_state_changed":
        a = event["agent"]
        return kind, event, Frame(epoch, seq, at, "state", a["name"], state=a["state"],
                                  turn_state=a.get("turn_state"))  # fmt: skip
    return kind, event, None


async def _follow(
    http: httpx.AsyncClient, ctx: _Ctx, epoch: int, res: ClientResult, frames: list[Frame] | None
) -> None:
    """One stream, read until it ends (a resync, the daemon stopping)."""
    got = await http.post("/api/ticket", content="{}", headers=ACT)
    got.raise_for_status()
    params = {"ticket": got.json()["ticket"]}
    timeout = httpx.Timeout(10.0, read=60.0)
    async with http.stream("GET", "/dashboard/stream", params=params, timeout=timeout) as resp:
        resp.raise_for_status()
        res.connects += 1
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            at = time.time()
            kind, event, kept = _frame(line, at, epoch)
            if kind == "resync":
                res.resyncs += 1
                return
            if kind == "sent":
                res.lags.append((at, at - float(event["message"]["sent_at"])))
            elif kind == "delivered":
                res.lags.append((at, at - float(event["delivered_at"])))
                if frames is not None:
                    ctx.tell(("delivered", list(event["ids"])))
            if kept is not None and frames is not None:
                frames.append(kept)


async def _time_state(
    http: httpx.AsyncClient, ctx: _Ctx, epoch: int, res: ClientResult, rng: random.Random
) -> None:
    while True:
        await asyncio.sleep(rng.uniform(*STATE_EVERY))  # the fetches' pace
        if not ctx.up.is_set() or ctx.epoch != epoch:
            return
        at, started = time.time(), time.perf_counter()
        try:
            got = await http.get("/api/state")
        except httpx.HTTPError:
            res.state_errors += 1
            continue
        took = time.perf_counter() - started
        if got.status_code == 200:
            res.states.append((at, took))
        else:
            res.state_errors += 1


async def _live(ctx: _Ctx, res: ClientResult, frames: list[Frame] | None, seed: int) -> None:
    rng = random.Random(seed)
    while not ctx.stopping.is_set():
        await ctx.up.wait()
        if ctx.stopping.is_set():
            return
        epoch, changed = ctx.epoch, ctx.changed
        base = f"http://127.0.0.1:{ctx.port}"
        headers = {"Authorization": f"Bearer {ctx.token}"}
        failed = False
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10.0) as http:
            timer = asyncio.create_task(_time_state(http, ctx, epoch, res, rng))
            try:
                await _follow(http, ctx, epoch, res, frames)
            except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                failed = ctx.up.is_set() and ctx.epoch == epoch
                if failed:
                    _note(res, exc)
            finally:
                timer.cancel()
                await asyncio.gather(timer, return_exceptions=True)
        if failed:  # the daemon is up but the stream failed: try again shortly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), RETRY_PAUSE)


def _open_stalled(port: int, ticket: str) -> socket.socket:
    """A stream with a 4 KiB receive buffer whose response head is read, and nothing more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    request = f"GET /dashboard/stream?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    sock.sendall(f"{request}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("the stalled stream closed before its head")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        sock.close()
        raise ConnectionError(f"the stalled stream answered {head[:40]!r}")
    return sock


async def _stalled(ctx: _Ctx, out: WatchResult) -> None:
    sock: socket.socket | None = None
    try:
        while not ctx.stopping.is_set():
            await ctx.up.wait()
            if ctx.stopping.is_set():
                return
            changed = ctx.changed
            if sock is not None:
                sock.close()
                sock = None
            base = f"http://127.0.0.1:{ctx.port}"
            try:
                async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
                    headers = {**ACT, "Authorization": f"Bearer {ctx.token}"}
                    got = await http.post("/api/ticket", content="{}", headers=headers)
                    got.raise_for_status()
                sock = await asyncio.to_thread(_open_stalled, ctx.port, got.json()["ticket"])
                out.stalled_opened += 1
            except (httpx.HTTPError, OSError, ValueError) as exc:
                _note(out, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), STALLED_REOPEN)
    finally:
        if sock is not None:
            sock.close()


def _control(conn: Connection, loop: asyncio.AbstractEventLoop, ctx: _Ctx) -> None:
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = ("stop",)
        loop.call_soon_threadsafe(ctx.handle, msg)
        if msg[0] == "stop":
            return


async def _serve(conn: Connection, live: int, seed: int) -> None:
    ctx = _Ctx(conn)
    loop = asyncio.get_running_loop()
    threading.Thread(target=_control, args=(conn, loop, ctx), daemon=True).start()
    out = WatchResult([ClientResult() for _ in range(live)], [])
    tasks = [
        asyncio.create_task(_live(ctx, out.clients[i], out.frames if i == 0 else None, seed + i))
        for i in range(live)
    ]
    tasks.append(asyncio.create_task(_stalled(ctx, out)))
    await ctx.stopping.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ctx.tell(("result", out))


def serve(conn: Connection, live: int, seed: int) -> None:
    """The process's entry point."""
    asyncio.run(_serve(conn, live, seed))


class Watcher:
    """The runner's handle on the clients' process."""

    def __init__(self, seed: int, on_delivered: Callable[[list[int]], None]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._proc = context.Process(target=serve, args=(theirs, LIVE, seed), daemon=True)
        self._proc.start()
        theirs.close()
        self._on_delivered = on_delivered
        self._result: WatchResult | None = None
        self._done = threading.Event()
        self._send = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "delivered":
                self._on_delivered(msg[1])
            elif msg[0] == "result":
                self._result = msg[1]
                break
        self._done.set()

    def _tell(self, msg: tuple[Any, ...]) -> None:
        with self._send, contextlib.suppress(OSError):
            self._conn.send(msg)

    def up(self, port: int, token: str, epoch: int) -> None:
        self._tell(("up", port, token, epoch))

    def down(self) -> None:
        self._tell(("down",))

    async def finish(self) -> WatchResult:
        """Stop the clients; what they measured (bounded; empty if the process failed)."""
        self._tell(("stop",))
        await asyncio.to_thread(self._done.wait, FINISH_TIMEOUT)
        await asyncio.to_thread(self._proc.join, FINISH_TIMEOUT)
        if self._proc.is_alive():
            self._proc.kill()
            await asyncio.to_thread(self._proc.join, FINISH_TIMEOUT)
        self._conn.close()
        return self._result or WatchResult([], [], stalled_errors=["the clients sent nothing"])
