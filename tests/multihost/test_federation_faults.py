"""Cross-host messages through faults: a NATS node killed, one stopped and continued, a
hive-core killed and restarted, and NATS gone altogether. Nothing is lost or duplicated,
each sender's order holds, and each message arrives once its destination host is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient
from hive_share.models import Message
from tests.multihost.hives import Hosts, hosts_of
from tests.multihost.nats_cluster import NatsCluster

PER_ROUND = 15
"""Messages each direction sends in each round."""
WAIT = 30.0
"""Seconds a receiver may wait for what was sent to it (a stopped NATS server is noticed
after about 10 s; a lost delivery comes again after 10 s)."""


@pytest.fixture
def hosts(nats_cluster: NatsCluster) -> Iterator[Hosts]:
    with hosts_of(nats_cluster) as joined:
        joined.spawn_idle("a", "ada")
        joined.spawn_idle("b", "bea")
        joined.settled(3)
        yield joined


@dataclass
class Inbox:
    """What one agent received: each message id once, in the order first seen."""

    seen: dict[int, Message] = field(default_factory=dict)

    def bodies(self) -> list[str]:
        return [m.body for m in self.seen.values()]


async def send_batch(hosts: Hosts, host: str, me: str, to: str, numbers: range) -> None:
    async with HiveClient(hosts[host].agent_sock(me)) as client:
        for n in numbers:
            key = f"{me}-{to}-{n}"
            req = rq.Send(cmd="send", to=to, body=f"{me}-{n}", idempotency_key=key)
            await client.call(req, rs.Sent)


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


def check(inbox: Inbox, sender: str, total: int) -> None:
    expected = [f"{sender}-{n}" for n in range(total)]
    assert inbox.bodies() == expected  # each once (no second commit), in the sender's order
    assert all(m.sender == sender for m in inbox.seen.values())


async def test_messages_survive_nats_and_hive_core_faults(
    hosts: Hosts, nats_cluster: NatsCluster
) -> None:
    at_a, at_b = Receiver(hosts, "a", "ada"), Receiver(hosts, "b", "bea")
    rounds = 3
    async with receiving(at_a, at_b):
        for r in range(rounds):
            numbers = range(r * PER_ROUND, (r + 1) * PER_ROUND)
            if r == 0:  # a server gone: the other two keep the quorum
                nats_cluster.kill(0)
            elif r == 1:  # a server that keeps its sockets open and answers nothing
                nats_cluster.pause(1)
            else:  # the destination's hive-core dies; its messages wait on the stream
                at_b.up.clear()
                hosts["b"].kill9()
            await send_batch(hosts, "a", "ada", "bea", numbers)
            if r == 2:
                hosts["b"].start()
                at_b.up.set()
            await send_batch(hosts, "b", "bea", "ada", numbers)
            await at_a.has(numbers.stop)  # through the fault, before it is healed
            await at_b.has(numbers.stop)
            if r == 0:
                nats_cluster.restart(0)
            elif r == 1:
                nats_cluster.resume(1)
    check(at_b.inbox, "ada", rounds * PER_ROUND)
    check(at_a.inbox, "bea", rounds * PER_ROUND)


async def test_with_nats_gone_local_work_goes_on_and_the_queue_flushes_after(
    hosts: Hosts, nats_cluster: NatsCluster
) -> None:
    hosts.spawn_idle("a", "amy")
    for i in range(len(nats_cluster.nodes)):
        nats_cluster.kill(i)
    hosts.wait_until("a", "NATS down", lambda s: s.link == "down")
    # Local sends and receives go on; sends to another host's agent are taken and queued.
    await send_batch(hosts, "a", "ada", "amy", range(3))
    await send_batch(hosts, "a", "ada", "bea", range(5))
    local = Inbox()
    await receive(hosts, "a", "amy", local, 3)
    check(local, "ada", 3)
    pending = hosts["a"].cli("hosts", "--json")
    assert '"pending_forwards": 5' in pending.stdout, pending.stdout
    with pytest.raises(ClientError, match="out of reach"):
        async with HiveClient(hosts["a"].host_sock) as op:
            await op.call(rq.Spawn(cmd="spawn", name="zed"), rs.Done)
    nats_cluster.start()  # all three again, on their stores
    remote = Inbox()
    async with asyncio.timeout(WAIT * 2):
        await receive(hosts, "b", "bea", remote, 5)
    check(remote, "ada", 5)
