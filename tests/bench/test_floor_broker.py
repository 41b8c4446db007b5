"""The floor broker speaks the hive's wire for send, recv and ack, with the same guarantees
the floor lines hold it to: a send is durable before its answer, a duplicate key is told, a
parked recv wakes on the send, a lease ends with its connection, an ack is durable."""

from __future__ import annotations

import asyncio
import sqlite3

from bench.floor import floor_broker
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient

BOUND = 10.0


def _delivered(path: str) -> list[tuple[int, bool]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, delivered_at IS NOT NULL FROM messages ORDER BY id")
        return [(i, bool(d)) for i, d in rows]


def test_send_wake_lease_and_ack() -> None:
    async def scenario(host: str, alice: str, db: str) -> None:
        async with HiveClient(host) as op, HiveClient(alice) as rx, asyncio.timeout(BOUND):
            parked = asyncio.create_task(
                rx.call(rq.Recv(cmd="recv", wait_seconds=BOUND), rs.Messages)
            )
            sent = await op.call(
                rq.Send(cmd="send", to="alice", body="hi", idempotency_key="k1"), rs.Sent
            )
            assert _delivered(db) == [(sent.id, False)]  # durable before the answer
            again = await op.call(
                rq.Send(cmd="send", to="alice", body="hi", idempotency_key="k1"), rs.Sent
            )
            assert (again.id, again.duplicate) == (sent.id, True)
            got = await parked
            assert [(m.id, m.sender, m.body) for m in got.messages] == [(sent.id, "operator", "hi")]

            async with HiveClient(alice) as other:  # leased to rx: nothing for another
                none = await other.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
                assert none.messages == []
            acked = await rx.call(rq.Recv(cmd="recv", wait_seconds=0, ack=[sent.id]), rs.Messages)
            assert (acked.acked, acked.messages) == (1, [])
            assert _delivered(db) == [(sent.id, True)]

            second = await op.call(
                rq.Send(cmd="send", to="alice", body="again", idempotency_key="k2"), rs.Sent
            )
            leased = await rx.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
            assert [m.id for m in leased.messages] == [second.id]
        async with (
            HiveClient(alice) as late,
            asyncio.timeout(BOUND),
        ):  # rx closed unacked: its lease ended
            got = await late.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
            assert [m.id for m in got.messages] == [second.id]

    with floor_broker(["alice", "bob"]) as daemon:
        db = str(daemon.state_dir / "hive.sqlite")
        asyncio.run(scenario(str(daemon.host_socket), str(daemon.agent_socket("alice")), db))
