"""Three hive-cores on one NATS JetStream cluster: names, the directory, cross-host messages."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from hive_share.models import Message
from tests.multihost.hives import Hosts, host_env, hosts_of
from tests.multihost.nats_cluster import NatsCluster

WAIT = 20.0
"""Seconds a receiver's long-poll waits for a message from another host."""


@pytest.fixture
def hosts(nats_cluster: NatsCluster) -> Iterator[Hosts]:
    with hosts_of(nats_cluster) as joined:
        yield joined


def ok(hosts: Hosts, host: str, *args: str, stdin: str | None = None) -> str:
    result = hosts[host].cli(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def receive(client: HiveClient, count: int) -> list[Message]:
    """`count` messages, however many long-polls they take (each bounded)."""
    got: list[Message] = []
    while len(got) < count:
        answer = await client.call(rq.Recv(cmd="recv", wait_seconds=WAIT), rs.Messages)
        assert answer.messages, f"nothing more arrived within {WAIT}s; got {got}"
        got += answer.messages
    await client.call(rq.Ack(cmd="ack", ids=[m.id for m in got]), rs.Acked)
    return got


async def test_a_message_crosses_hosts_and_the_reply_comes_back(hosts: Hosts) -> None:
    hosts.spawn_idle("a", "ada")
    hosts.spawn_idle("b", "bea")
    hosts.settled(3)  # the manager, ada and bea
    listed = json.loads(ok(hosts, "c", "list", "--json"))
    assert {(r["name"], r["host"]) for r in listed} >= {("ada", "a"), ("bea", "b")}
    ok(hosts, "a", "send", "bea", "-", stdin="from the operator on a")
    async with HiveClient(hosts["a"].agent_sock("ada")) as ada:
        await ada.call(rq.Send(cmd="send", to="bea", body="hello from ada"), rs.Sent)
        async with HiveClient(hosts["b"].agent_sock("bea")) as bea:
            got = await receive(bea, 2)
            assert [(m.sender, m.body) for m in got] == [
                ("operator", "from the operator on a"),
                ("ada", "hello from ada"),
            ]
            await bea.call(rq.Send(cmd="send", to="ada", body="hello back"), rs.Sent)
        back = await receive(ada, 1)
    assert [(m.sender, m.body) for m in back] == [("bea", "hello back")]
    info = json.loads(ok(hosts, "a", "hosts", "--json"))
    assert info["federated"] is True
    mine = info["hosts"][0]
    assert (mine["host"], mine["this"], mine["link"]) == ("a", True, "up")
    assert (mine["forwarded"], mine["received"], mine["pending_forwards"]) == (2, 1, 0)
    assert {h["host"] for h in info["hosts"]} == {"a", "b", "c"}


@pytest.fixture
def public_b(nats_cluster: NatsCluster) -> Iterator[Hosts]:
    """Hosts a, b and c, b's dashboard reached by a name of its own (`HIVE_PUBLIC_URL`)."""
    with hosts_of(nats_cluster, extra={"b": {"HIVE_PUBLIC_URL": "http://b.hive.test:7357"}}) as h:
        yield h


def test_another_hosts_agent_is_acted_on_where_it_runs(public_b: Hosts) -> None:
    hosts = public_b
    hosts.spawn_idle("b", "bea")
    hosts.settled(2)  # the manager and bea
    assert ok(hosts, "a", "start", "bea").strip() == "started bea"
    assert "bea" in hosts.running_agents("b")
    assert ok(hosts, "a", "logs", "bea", "--raw").strip()  # b's harness log, read on b
    ok(hosts, "c", "logs", "bea")  # its turns, through its harness on b
    link = ok(hosts, "c", "login-link", "bea")
    port = next(
        r["web_port"] for r in json.loads(ok(hosts, "b", "list", "--json")) if r["name"] == "bea"
    )
    assert link.startswith(f"http://b.hive.test:{port}/login?code="), link  # b's name
    assert ok(hosts, "c", "stop", "bea").strip() == "stopped bea"
    assert "bea" not in hosts.running_agents("b")
    manager = next(h for h in ("a", "b", "c") if "hm1nd" in hosts.local_agents(h))
    asker = next(h for h in ("a", "b", "c") if h != manager)
    refused = hosts[asker].cli("destroy", "hm1nd")  # refused there, and said so here
    assert refused.returncode == 1
    assert "the manager cannot be destroyed" in refused.stderr
    hosts["b"].stop()
    gone = hosts["a"].cli("start", "bea")
    assert gone.returncode == 1
    assert "host b is not answering" in gone.stderr, gone.stderr


def test_a_spawn_goes_to_the_host_named_or_with_the_most_free_places(
    nats_cluster: NatsCluster,
) -> None:
    capacity = {"a": "1", "b": "6", "c": "2"}
    envs = {h: {**host_env(nats_cluster, h), "HIVE_HOST_CAPACITY": n} for h, n in capacity.items()}
    hosts = Hosts(nats_cluster, envs)
    try:
        hosts.start()
        hosts.linked()
        assert "spawned roam" in ok(hosts, "a", "spawn", "roam")  # b has the most room
        assert "roam" in hosts.local_agents("b")
        ok(hosts, "a", "spawn", "pinned", "--host", "c")
        assert "pinned" in hosts.local_agents("c")
        nowhere = hosts["a"].cli("spawn", "lost", "--host", "zz")
        assert nowhere.returncode == 1
        assert "no host 'zz' in the hive" in nowhere.stderr
    finally:
        hosts.close()
