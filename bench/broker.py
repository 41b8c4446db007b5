"""Benchmarks against a live daemon's broker, speaking as its agents over their sockets.

Each agent gets one sender and one receiver connection, kept open across all
phases: a long-poll `recv` that the bench abandoned would stay blocked inside the
daemon and steal the next message, so every receiver is only ever cancelled at
the very end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bench.daemon import Daemon
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient, new_idempotency_key
from hive_share.models import Message

LONG_POLL = 60.0
"""`wait_seconds` of every blocked recv; far longer than any phase."""
MIN_ARMED = 0.002
"""A receiver is used only this long after its recv was issued, so the recv is parked
in the daemon (not still in flight) when the send lands. Rotating over ten
receivers normally leaves far more than this."""
TAKE_TIMEOUT = 10.0
"""A receiver that gets nothing for this long while messages are being sent to it
means something else consumed them; fail instead of hanging."""
PHASE_TIMEOUT = 60.0


class BenchError(RuntimeError):
    """The broker answered, but not what the bench expected."""


class Receiver:
    """One connection that keeps at most one long-poll `recv` outstanding; each `recv`
    carries the ack of the messages the one before it returned."""

    def __init__(self, path: Path) -> None:
        self.client = HiveClient(path)
        self._pending: asyncio.Task[rs.Messages] | None = None
        self._armed_at = 0.0
        self._to_ack: list[int] = []
        self._acking = 0

    @property
    def armed(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def arm(self) -> None:
        """Issue a blocking recv in the background."""
        if self._pending is not None:
            raise BenchError("receiver is already waiting")
        recv = rq.Recv(cmd="recv", wait_seconds=LONG_POLL, ack=self._to_ack)
        self._to_ack, self._acking = [], len(self._to_ack)
        self._pending = asyncio.create_task(self.client.call(recv, rs.Messages))
        self._armed_at = time.perf_counter()

    async def parked(self) -> None:
        """Return once the outstanding recv has had `MIN_ARMED` to reach the daemon."""
        age = time.perf_counter() - self._armed_at
        if age < MIN_ARMED:
            await asyncio.sleep(MIN_ARMED - age)

    async def take(self) -> list[Message]:
        """The messages the outstanding recv returns (waits for them)."""
        if self._pending is None:
            raise BenchError("receiver is not waiting")
        pending, self._pending = self._pending, None
        try:
            async with asyncio.timeout(TAKE_TIMEOUT):
                reply = await pending
        except TimeoutError:
            raise BenchError(
                f"{self.client.path}: no message within {TAKE_TIMEOUT:.0f}s; did another "
                "client (a harness?) recv it on this agent's socket?"
            ) from None
        if reply.acked != self._acking:
            raise BenchError(f"acked {reply.acked} of {self._acking} messages")
        return reply.messages

    async def ack(self, messages: Sequence[Message]) -> None:
        """Ack `messages` with the next `recv` (`arm`)."""
        self._to_ack += [m.id for m in messages]

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
            self._pending = None
        await self.client.close()


class Swarm:
    """The bench playing `names`: a sender and a receiver connection per agent."""

    def __init__(self, daemon: Daemon, names: Sequence[str]) -> None:
        self.daemon = daemon
        self.names = list(names)
        self.senders = [HiveClient(daemon.agent_socket(n)) for n in names]
        self.receivers = [Receiver(daemon.agent_socket(n)) for n in names]
        self.extra: list[Receiver] = []

    async def __aenter__(self) -> Swarm:
        await asyncio.gather(
            *(c.connect() for c in self.senders), *(r.client.connect() for r in self.receivers)
        )
        for r in self.receivers:
            r.arm()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.gather(
            *(r.close() for r in [*self.receivers, *self.extra]),
            *(c.close() for c in self.senders),
        )

    async def add_receivers(self, per_agent: int) -> None:
        """Open and arm `per_agent` more long-poll connections on every agent socket."""
        fresh = [
            Receiver(self.daemon.agent_socket(n)) for n in self.names for _ in range(per_agent)
        ]
        await asyncio.gather(*(r.client.connect() for r in fresh))
        for r in fresh:
            r.arm()
        self.extra += fresh

    def all_receivers(self) -> list[Receiver]:
        return [*self.receivers, *self.extra]

    def send_request(self, to: int, body: str) -> rq.Send:
        """A send to agent number `to` with a fresh idempotency key."""
        return rq.Send(
            cmd="send", to=self.names[to], body=body, idempotency_key=new_idempotency_key()
        )


async def spawn_agents(host_socket: Path, names: Sequence[str]) -> None:
    """Spawn every agent through the operator's host socket, concurrently."""

    async def one(name: str) -> None:
        async with HiveClient(host_socket) as client:
            await client.call(rq.Spawn(cmd="spawn", name=name), rs.Done)

    async with asyncio.timeout(PHASE_TIMEOUT):
        await asyncio.gather(*(one(n) for n in names))


def _wake_pair(i: int, agents: int, total: int) -> tuple[int, int]:
    """Round `i`'s `(receiver, sender)`: receivers rotate over the first `agents` agents; the
    senders are the other agents in turn (agent i+1 when all take part), so no agent sends
    more than its rate limit's burst allows."""
    to = i % agents
    if agents < total:
        return to, agents + i % (total - agents)
    return to, (i + 1) % total


async def send_to_wake(
    swarm: Swarm, rounds: int, warmup: int, agents: int | None = None
) -> list[float]:
    """Seconds from just before a send until the blocked receiver's recv returns it.

    The receivers rotate over the first `agents` agents (all by default), each one's recv
    parked since its last turn. The send's own reply and the receiver's ack are outside
    the timing.
    """
    total = len(swarm.names)
    agents = total if agents is None else agents
    if not 0 < agents <= total or (agents < total and total < 2):
        raise BenchError(f"cannot rotate over {agents} of {total} agents")
    samples: list[float] = []
    async with asyncio.timeout(PHASE_TIMEOUT):
        for i in range(warmup + rounds):
            to, sender = _wake_pair(i, agents, total)
            request = swarm.send_request(to, f"wake {i}")
            elapsed = await timed_wake(swarm.receivers[to], swarm.senders[sender], request)
            if i >= warmup:
                samples.append(elapsed)
    return samples


async def timed_wake(receiver: Receiver, sender: HiveClient, request: rq.Send) -> float:
    """Seconds from just before `sender` sends `request` until `receiver`'s parked recv
    returns it; the send's reply and the ack stay outside the timing, and `receiver` is
    parked again on return."""
    await receiver.parked()
    start = time.perf_counter()
    sent = asyncio.create_task(sender.call(request, rs.Sent))
    messages = await receiver.take()
    elapsed = time.perf_counter() - start
    await sent
    if [m.body for m in messages] != [request.body]:
        raise BenchError(f"expected [{request.body!r}], got {[m.body for m in messages]}")
    await receiver.ack(messages)
    receiver.arm()
    # Its ack is committed before that recv parks: let it, so the next round's send never
    # shares a commit with it and the ack stays outside the timing.
    await receiver.parked()
    return elapsed


def burst_targets(senders: int, agents: int, per_sender: int) -> list[int]:
    """How many burst messages each of `agents` agents gets: sender s writes to agent s mod
    `agents`."""
    counts = [0] * agents
    for s in range(senders):
        counts[s % agents] += per_sender
    return counts


async def _send_burst(
    daemon: Daemon, names: Sequence[str], senders: int, per_sender: int, prefix: str
) -> None:
    """`senders` operator connections, each sending `per_sender` messages back to back."""

    async def send_all(sender: int) -> None:
        to = names[sender % len(names)]
        async with HiveClient(daemon.host_socket) as client:
            for k in range(per_sender):
                request = rq.Send(
                    cmd="send", to=to, body=f"{prefix} {k}", idempotency_key=new_idempotency_key()
                )
                await client.call(request, rs.Sent)

    await asyncio.gather(*(send_all(s) for s in range(senders)))


async def send_only(daemon: Daemon, names: Sequence[str], senders: int, per_sender: int) -> float:
    """Acknowledged sends per second, `senders` operator connections at once, nobody
    receiving: every message stays in its recipient's inbox (`drain` takes them later).

    Operator connections, because agents are rate-limited by design (`broker.SEND_RATE`)
    and this measures what the broker itself carries.
    """
    start = time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT):
        await _send_burst(daemon, names, senders, per_sender, "backlog")
    return senders * per_sender / (time.perf_counter() - start)


async def _drain_one(receiver: Receiver, expected: int, prefix: str) -> None:
    got = 0
    while got < expected:
        messages = await receiver.take()
        if any(not m.body.startswith(f"{prefix} ") for m in messages):
            raise BenchError(f"a stray message arrived among the {prefix!r} ones")
        await receiver.ack(messages)
        got += len(messages)
        receiver.arm()  # left armed at the end: the next phase reuses it
    if got != expected:
        raise BenchError(f"{receiver.client.path}: got {got} {prefix!r} messages, sent {expected}")


async def drain(swarm: Swarm, expected: Sequence[int], prefix: str = "backlog") -> None:
    """Receive and ack exactly `expected[i]` messages on agent i (the backlog `send_only`
    left), checking every one is from that burst."""
    async with asyncio.timeout(PHASE_TIMEOUT):
        await asyncio.gather(
            *(_drain_one(r, n, prefix) for r, n in zip(swarm.receivers, expected, strict=True))
        )


async def throughput(swarm: Swarm, senders: int, per_sender: int) -> float:
    """Delivered (received and acked) messages per second, every sender at once.

    `senders` operator connections each send `per_sender` messages back to back (each with
    its own idempotency key) to agent s mod the swarm's size; every receiver drains with
    recv + ack meanwhile.
    """
    expected = burst_targets(senders, len(swarm.names), per_sender)
    start = time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT):
        await asyncio.gather(
            _send_burst(swarm.daemon, swarm.names, senders, per_sender, "burst"),
            *(_drain_one(r, n, "burst") for r, n in zip(swarm.receivers, expected, strict=True)),
        )
    return senders * per_sender / (time.perf_counter() - start)


class WalWatch:
    """Samples the daemon's WAL size every `interval` seconds while it runs."""

    def __init__(self, daemon: Daemon, interval: float = 0.05) -> None:
        self._daemon = daemon
        self._interval = interval
        self.peak = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self._daemon.wal_bytes())
            self.samples += 1
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> WalWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.finish()

    async def finish(self) -> None:
        """Stop sampling (idempotent); `peak` is final from here on."""
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.peak = max(self.peak, self._daemon.wal_bytes())


async def idle_cpu(swarm: Swarm, long_polls_per_agent: int, settle: float, window: float) -> float:
    """The daemon's CPU use, in % of one core, while only long-polls are waiting.

    `settle` lets the new recvs park and the daemon's periodic WAL checkpoint
    (every 2 s, only after writes) fold in the earlier bursts before measuring.
    """
    missing = long_polls_per_agent - 1  # each agent's receiver is already waiting
    if missing > 0:
        await swarm.add_receivers(missing)
    receivers = swarm.all_receivers()
    await asyncio.sleep(settle)
    cpu_start, wall_start = swarm.daemon.cpu_seconds(), time.monotonic()
    await asyncio.sleep(window)
    cpu_end, wall_end = swarm.daemon.cpu_seconds(), time.monotonic()
    waiting = sum(r.armed for r in receivers)
    if waiting != long_polls_per_agent * len(swarm.names):
        raise BenchError(f"only {waiting} long-polls were still waiting after the idle window")
    return 100 * (cpu_end - cpu_start) / (wall_end - wall_start)
