"""Cross-host messages through faults: a NATS node killed, one stopped and continued, a
hive-core killed and restarted, and NATS gone altogether while local sends and turns go on.
Nothing is lost or duplicated, each sender's order holds, and each message arrives once its
destination host is back.

The default suite runs them small; the larger run (docs/multihost.md) sets
`HIVE_TEST_MULTIHOST_ROUNDS` (fault rounds, the three faults in turn),
`HIVE_TEST_MULTIHOST_PER_ROUND` (messages each way in each round) and
`HIVE_TEST_NATS_OUTAGE` (seconds NATS stays away while local work goes on)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from hive_core.send_throttle import SEND_BURST, SEND_RATE
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient
from hive_share.models import Message
from hive_share.names import OPERATOR
from tests.e2e.hive import short_tmp
from tests.e2e.turns import operator_send, turn_env, turns_done
from tests.fake_anthropic import FakeAnthropic, Reply, Seen, text
from tests.multihost.hives import Hosts, host_env, hosts_of
from tests.multihost.nats_cluster import NatsCluster

ROUNDS = int(os.environ.get("HIVE_TEST_MULTIHOST_ROUNDS", "3"))
"""Fault rounds: a NATS server killed, one stopped, the destination's hive-core killed, in
turn."""
PER_ROUND = int(os.environ.get("HIVE_TEST_MULTIHOST_PER_ROUND", "15"))
"""Messages each direction sends in each round."""
OUTAGE = float(os.environ.get("HIVE_TEST_NATS_OUTAGE", "0"))
"""Seconds NATS stays away while local sends and turns go on (at least one pass of them)."""
SENDERS = math.ceil(ROUNDS * PER_ROUND / SEND_BURST)
"""Agents sending each way: each sends at most one burst in all, so no send is told to slow
down (the larger run sends more than one agent may at once)."""
WAIT = 30.0
"""Seconds a receiver may wait for what was sent to it (a stopped NATS server is noticed
after about 10 s; a lost delivery comes again after 10 s)."""


def sender(base: str, n: int) -> str:
    """The agent that sends message `n` of `base`'s: `base` for the first burst, then
    `base1`, `base2`, …"""
    k = int(n // SEND_BURST)
    return base if k == 0 else f"{base}{k}"


@pytest.fixture
def hosts(nats_cluster: NatsCluster) -> Iterator[Hosts]:
    with hosts_of(nats_cluster) as joined:
        for host, base in (("a", "ada"), ("b", "bea")):
            joined.spawn_idle(host, *(sender(base, int(k * SEND_BURST)) for k in range(SENDERS)))
        joined.settled(1 + 2 * SENDERS)
        yield joined


@dataclass
class Inbox:
    """What one agent received: each message id once, in the order first seen."""

    seen: dict[int, Message] = field(default_factory=dict)


async def send_batch(hosts: Hosts, host: str, base: str, to: str, numbers: range) -> None:
    """Send each of `numbers` once, each from its sender (`sender(base, n)`; `operator`:
    the operator)."""
    clients: dict[str, HiveClient] = {}
    async with contextlib.AsyncExitStack() as stack:
        for n in numbers:
            me = base if base == OPERATOR else sender(base, n)
            if me not in clients:
                sock = hosts[host].host_sock if me == OPERATOR else hosts[host].agent_sock(me)
                clients[me] = await stack.enter_async_context(HiveClient(sock))
            key = f"{me}-{to}-{n}"
            req = rq.Send(cmd="send", to=to, body=f"{me}-{n}", idempotency_key=key)
            await clients[me].call(req, rs.Sent)


async def receive(hosts: Hosts, host: str, me: str, inbox: Inbox, total: int) -> None:
    """Receive and ack until `total` distinct messages arrived (each wait bounded)."""
    async with HiveClient(hosts[host].agent_sock(me)) as client:
        while len(inbox.seen) < total:
            got = await client.call(rq.Recv(cmd="recv", wait_seconds=WAIT), rs.Messages)
            assert got.messages, f"{me} waited {WAIT}s; has {len(inbox.seen)} of {total}"
            for m in got.messages:
                inbox.seen.setdefault(m.id, m)
            await client.call(rq.Ack(cmd="ack", ids=[m.id for m in got.messages]), rs.Acked)


class Receiver:
    """One agent receiving all along, in a task of its own; it connects again once its
    hive-core is back (`up`), and `has(count)` waits (bounded) for that many messages."""

    def __init__(self, hosts: Hosts, host: str, me: str) -> None:
        self.hosts, self.host, self.me = hosts, host, me
        self.inbox = Inbox()
        self.up = asyncio.Event()
        self.up.set()
        self._grew = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.up.wait()
            try:
                async with HiveClient(self.hosts[self.host].agent_sock(self.me)) as client:
                    while True:
                        req = rq.Recv(cmd="recv", wait_seconds=WAIT)
                        got = await client.call(req, rs.Messages)
                        for m in got.messages:
                            self.inbox.seen.setdefault(m.id, m)
                        self._grew.set()
                        ids = [m.id for m in got.messages]
                        await client.call(rq.Ack(cmd="ack", ids=ids), rs.Acked)
            except ClientError:
                if self.up.is_set():
                    raise  # its hive-core went without the test taking it down

    async def has(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.inbox.seen) < count:
                self._grew.clear()
                await self._grew.wait()


@contextlib.asynccontextmanager
async def receiving(*receivers: Receiver) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r.run()) for r in receivers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def check(inbox: Inbox, base: str, total: int) -> None:
    """`inbox` holds messages 0 to `total` of `base`'s, each once (no second commit), in
    each sender's order."""
    expected: defaultdict[str, list[str]] = defaultdict(list)
    for n in range(total):
        me = base if base == OPERATOR else sender(base, n)
        expected[me].append(f"{me}-{n}")
    got: defaultdict[str, list[str]] = defaultdict(list)
    for m in inbox.seen.values():
        got[m.sender].append(m.body)
    assert got == expected


@pytest.mark.timeout(120 + ROUNDS * (20 + PER_ROUND / SEND_RATE))  # the larger run's size
async def test_messages_survive_nats_and_hive_core_faults(
    hosts: Hosts, nats_cluster: NatsCluster
) -> None:
    at_a, at_b = Receiver(hosts, "a", "ada"), Receiver(hosts, "b", "bea")
    async with receiving(at_a, at_b):
        for r in range(ROUNDS):
            numbers = range(r * PER_ROUND, (r + 1) * PER_ROUND)
            fault = r % 3
            if fault == 0:  # a server gone: the other two keep the quorum
                nats_cluster.kill(0)
            elif fault == 1:  # a server that keeps its sockets open and answers nothing
                nats_cluster.pause(1)
            else:  # the destination's hive-core dies; its messages wait on the stream
                at_b.up.clear()
                hosts["b"].kill9()
            await send_batch(hosts, "a", "ada", "bea", numbers)
            if fault == 2:
                hosts["b"].start()
                at_b.up.set()
            await send_batch(hosts, "b", "bea", "ada", numbers)
            await at_a.has(numbers.stop)  # through the fault, before it is healed
            await at_b.has(numbers.stop)
            if fault == 0:
                nats_cluster.restart(0)
            elif fault == 1:
                nats_cluster.resume(1)
    check(at_b.inbox, "ada", ROUNDS * PER_ROUND)
    check(at_a.inbox, "bea", ROUNDS * PER_ROUND)


def answer_ok(seen: Seen) -> Reply:
    return text("ok")


@pytest.mark.timeout(120 + 2 * OUTAGE)
async def test_with_nats_gone_local_work_goes_on_and_the_queue_flushes_after(
    nats_cluster: NatsCluster,
) -> None:
    root = short_tmp()
    with FakeAnthropic(answer_ok) as fake:
        envs = {h: {**host_env(nats_cluster, h), **turn_env(fake, root)} for h in ("a", "b")}
        hosts = Hosts(nats_cluster, envs)
        try:
            hosts.start()
            hosts.linked()
            hosts.spawn_idle("a", "amy")
            hosts.spawn_idle("b", "bea")
            assert hosts["a"].cli("spawn", "tia", "--host", "a").returncode == 0  # turns on
            hosts.settled(4)
            await outage(hosts, nats_cluster)
        finally:
            hosts.close()
            shutil.rmtree(root, ignore_errors=True)


async def outage(hosts: Hosts, nats_cluster: NatsCluster) -> None:
    for i in range(len(nats_cluster.nodes)):
        nats_cluster.kill(i)
    hosts.wait_until("a", "NATS down", lambda s: s.link == "down")
    # Local sends, receives and turns go on; sends to another host's agent are taken and
    # queued. Passes of them until the outage has lasted OUTAGE seconds; the operator sends
    # (never told to slow down, however long the outage).
    passes, ends = 0, time.monotonic() + OUTAGE
    local = Inbox()
    while passes == 0 or time.monotonic() < ends:
        await send_batch(hosts, "a", OPERATOR, "amy", range(3 * passes, 3 * passes + 3))
        await send_batch(hosts, "a", OPERATOR, "bea", range(5 * passes, 5 * passes + 5))
        await receive(hosts, "a", "amy", local, 3 * passes + 3)
        await operator_send(hosts["a"], "tia", f"still here? ({passes})")
        await turns_done(hosts["a"], "tia", passes + 1)
        passes += 1
    check(local, OPERATOR, 3 * passes)
    pending = hosts["a"].cli("hosts", "--json")
    assert f'"pending_forwards": {5 * passes}' in pending.stdout, pending.stdout
    with pytest.raises(ClientError, match="out of reach"):
        async with HiveClient(hosts["a"].host_sock) as op:
            await op.call(rq.Spawn(cmd="spawn", name="zed"), rs.Done)
    nats_cluster.start()  # all three again, on their stores
    remote = Inbox()
    async with asyncio.timeout(WAIT * 2):
        await receive(hosts, "b", "bea", remote, 5 * passes)
    check(remote, OPERATOR, 5 * passes)
