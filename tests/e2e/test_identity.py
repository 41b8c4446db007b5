"""Identity = socket: a request on agent A's socket never acts as B, the manager or the operator."""

from __future__ import annotations

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import RemoteError
from tests.e2e.hive import Hive
from tests.e2e.raw import RawConn

CLAIMS = ["from", "sender", "from_agent", "as", "principal", "on_behalf_of", "requester"]


async def test_sender_claims_are_refused_on_every_socket(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob")
    for path in (hive.agent_sock("alice"), hive.manager_sock, hive.host_sock):
        conn = await RawConn.open(path)
        try:
            for field in CLAIMS:
                for claimed in ("bob", "operator", "hm1nd"):
                    request = {"cmd": "send", "to": "bob", "body": "x", field: claimed}
                    reply = await conn.ask_json(request)
                    assert reply is not None and reply["code"] == "identity_claim", reply
        finally:
            await conn.close()
    async with hive.client(hive.agent_sock("bob")) as bob:
        got = await bob.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
    assert got.messages == [], "a refused send was stored"


async def test_messages_carry_the_sockets_identity(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob")
    async with (
        hive.client(hive.agent_sock("alice")) as alice,
        hive.client(hive.manager_sock) as manager,
        hive.client() as operator,
        hive.client(hive.agent_sock("bob")) as bob,
    ):
        await alice.call(rq.Send(cmd="send", to="bob", body="from alice"), rs.Sent)
        await manager.call(rq.Send(cmd="send", to="bob", body="from manager"), rs.Sent)
        await operator.call(rq.Send(cmd="send", to="bob", body="from operator"), rs.Sent)
        got = await bob.call(rq.Recv(cmd="recv", wait_seconds=5), rs.Messages)
    assert [(m.sender, m.recipient, m.body) for m in got.messages] == [
        ("alice", "bob", "from alice"),
        ("hm1nd", "bob", "from manager"),
        ("operator", "bob", "from operator"),
    ]


async def test_an_agent_never_receives_or_acks_another_agents_mail(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob")
    async with (
        hive.client() as operator,
        hive.client(hive.agent_sock("alice")) as alice,
        hive.client(hive.agent_sock("bob")) as bob,
    ):
        sent = await operator.call(rq.Send(cmd="send", to="bob", body="for bob"), rs.Sent)
        got = await alice.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
        assert got.messages == []
        with pytest.raises(RemoteError) as refused:
            await alice.call(rq.Ack(cmd="ack", ids=[sent.id]), rs.Acked)
        assert refused.value.code == "conflict"
        mine = await bob.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
        assert [m.id for m in mine.messages] == [sent.id]


@pytest.mark.parametrize(
    ("socket", "verbs"),
    [
        (
            "agent",
            [
                "spawn",
                "request_spawn",
                "approve",
                "deny",
                "start",
                "stop",
                "kill",
                "restart",
                "rebuild",
                "destroy",
                "list",
                "pending",
                "inbox",
            ],
        ),
        ("manager", ["spawn", "approve", "deny", "stop", "destroy", "pending", "inbox"]),
        ("host", ["recv", "ack", "alive"]),
    ],
)
async def test_verbs_from_another_sockets_table_are_refused(
    hive: Hive, socket: str, verbs: list[str]
) -> None:
    hive.spawn_idle("alice", "bob")
    path = {"agent": hive.agent_sock("alice"), "manager": hive.manager_sock, "host": hive.host_sock}
    conn = await RawConn.open(path[socket])
    try:
        for verb in verbs:
            # Arguments that would be valid elsewhere: refusal comes before parsing them.
            reply = await conn.ask_json({"cmd": verb, "name": "bob", "id": 1, "ids": [1], "pid": 1})
            assert reply is not None and reply["code"] == "verb_not_allowed", (verb, reply)
    finally:
        await conn.close()
    listed = hive.cli("list", "--json")
    assert '"bob"' in listed.stdout and '"running"' in listed.stdout


async def test_the_manager_cannot_act_on_itself(hive: Hive) -> None:
    async with hive.client(hive.manager_sock) as manager:
        for req in (rq.Kill(cmd="kill", name="hm1nd"), rq.Restart(cmd="restart", name="hm1nd")):
            with pytest.raises(RemoteError) as refused:
                await manager.call(req, rs.Done)
            assert refused.value.code == "invalid_request"


async def test_manager_spawn_requests_are_attributed_to_the_manager(hive: Hive) -> None:
    async with hive.client(hive.manager_sock) as manager:
        queued = await manager.call(
            rq.RequestSpawn(cmd="request_spawn", name="carl"), rs.ApprovalResult
        )
    assert queued.approval.requester == "hm1nd"
    assert queued.approval.status == "pending"
