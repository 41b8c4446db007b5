"""A `recv` that carries the ack of the last batch: durable, lease-checked, whole or nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import RemoteError
from tests.e2e.dashboard import session, stream
from tests.e2e.hive import Hive
from tests.e2e.raw import RawConn

DEADLINE = 15.0


async def _send(hive: Hive, *bodies: str) -> list[int]:
    async with hive.client() as op:
        return [
            (await op.call(rq.Send(cmd="send", to="alice", body=b), rs.Sent)).id for b in bodies
        ]


def _delivered(hive: Hive, message_id: int) -> bool:
    db = sqlite3.connect(f"file:{hive.state_dir / 'hive.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT delivered_at FROM messages WHERE id = ?", (message_id,))
        return row.fetchone()[0] is not None
    finally:
        db.close()


async def test_acked_in_a_recv_is_never_redelivered_after_sigkill(hive: Hive) -> None:
    hive.spawn_idle("alice")
    first, second, third = await _send(hive, "one", "two", "three")
    async with hive.client(hive.agent_sock("alice")) as alice:
        got = await alice.call(rq.Recv(cmd="recv", max=2), rs.Messages)
        assert [m.id for m in got.messages] == [first, second]
        assert got.acked == 0
        # Ack the batch and lease the next message, in one request.
        more = await alice.call(rq.Recv(cmd="recv", ack=[first, second]), rs.Messages)
        assert [m.id for m in more.messages] == [third]
        assert more.acked == 2
        hive.kill9()
    hive.start()
    async with hive.client(hive.agent_sock("alice")) as alice:
        again = await alice.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
    # The acked two are gone for good; the leased-but-unacked third comes back.
    assert [m.id for m in again.messages] == [third]


async def test_a_foreign_id_refuses_the_whole_recv(hive: Hive) -> None:
    hive.spawn_idle("alice")
    first, second = await _send(hive, "one", "two")
    async with (
        hive.client(hive.agent_sock("alice")) as owner,
        hive.client(hive.agent_sock("alice")) as other,
    ):
        got = await owner.call(rq.Recv(cmd="recv", max=1), rs.Messages)
        assert [m.id for m in got.messages] == [first]
        for foreign in ([first], [first, 999_999], [999_999]):
            with pytest.raises(RemoteError) as refused:
                await other.call(rq.Recv(cmd="recv", ack=foreign), rs.Messages)
            assert refused.value.code == "conflict"
            assert "not leased to this connection" in refused.value.message
        # Nothing was leased by the refused recvs: the other connection still gets `two`.
        rest = await other.call(rq.Recv(cmd="recv"), rs.Messages)
        assert [m.id for m in rest.messages] == [second]
        # Nothing was acked either: the owner's own ack still marks `one` delivered.
        acked = await owner.call(rq.Ack(cmd="ack", ids=[first]), rs.Acked)
        assert acked.count == 1


async def test_an_ack_read_before_the_connection_died_stands(hive: Hive) -> None:
    hive.spawn_idle("alice")
    (first,) = await _send(hive, "one")
    conn = await RawConn.open(hive.agent_sock("alice"))
    reply = await conn.ask_json({"cmd": "recv"})
    assert reply is not None and [m["id"] for m in reply["messages"]] == [first]
    # The acking recv goes out, and the connection is gone before any answer; the
    # dashboard's event stream says when the ack is committed.
    line = json.dumps({"cmd": "recv", "wait_seconds": 60, "ack": [first]}).encode() + b"\n"
    async with session(hive) as client, stream(client, kinds="delivered") as frames:
        conn.writer.write(line)
        conn.writer.close()
        await conn.writer.wait_closed()
        async with asyncio.timeout(DEADLINE):
            await frames.until("delivered", recipient="alice", ids=[first])
    assert _delivered(hive, first)
    async with hive.client(hive.agent_sock("alice")) as alice:
        got = await alice.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
        assert got.messages == []
        hive.kill9()
    hive.start()
    async with hive.client(hive.agent_sock("alice")) as alice:
        got = await alice.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
    assert got.messages == []


async def test_a_connection_that_dies_before_its_acking_recv_is_sent_gets_it_again(
    hive: Hive,
) -> None:
    hive.spawn_idle("alice")
    (first,) = await _send(hive, "one")
    async with hive.client(hive.agent_sock("alice")) as gone:
        got = await gone.call(rq.Recv(cmd="recv"), rs.Messages)
        assert [m.id for m in got.messages] == [first]
    async with hive.client(hive.agent_sock("alice")) as alice:
        again = await alice.call(rq.Recv(cmd="recv", wait_seconds=DEADLINE), rs.Messages)
        assert [m.id for m in again.messages] == [first]
        # The lease moved to this connection: its ack, in the next recv, counts.
        done = await alice.call(rq.Recv(cmd="recv", ack=[first]), rs.Messages)
    assert done.acked == 1
    assert done.messages == []
