"""What the federation relies on from NATS JetStream, shown with nats-py against a real
three-node cluster: replicated streams with de-duplication, durable pull consumers,
surviving a killed or frozen node, KV compare-and-set, the object store, and auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import anyio
import httpx
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, PubAck, StreamInfo
from nats.js.api import StorageType as Storage
from nats.js.kv import KeyValue

from tests.multihost.nats_cluster import NatsCluster, User

T = TypeVar("T")

NODES = {"n0", "n1", "n2"}
STREAM = "HIVE_T"
SUBJECTS = ["hive.t.msg.>"]
INBOX = "hive.t.msg.b"
"""Agent b's inbox subject; its durable consumer filters on it."""
RETRY_DEADLINE = 10.0
BIG = 4 << 20
"""Bytes of an object whose reading asks for flow control."""

FEDERATION_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2,
    "reconnect_time_wait": 0.2,
    "max_reconnect_attempts": -1,
    # A frozen server keeps its socket open: only missed pings reveal it.
    "ping_interval": 1,
    "max_outstanding_pings": 2,
}
"""How the federation connects (with every node's URL): reconnecting forever."""

# The least a federation member needs: JetStream's API, acks and flow control (an ordered
# consumer's, as objects past ~2 MiB are read), the hive's subjects and the buckets'; its
# inbox for every reply. test_each_minimal_allow_list_entry_is_needed removes each.
MEMBER_PUBLISH = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "hive.t.msg.>", "$KV.fed.>", "$O.blobs.>"]
MEMBER_SUBSCRIBE = ["_INBOX.>"]


async def connect(
    servers: list[str], events: dict[str, asyncio.Event] | None = None, **options: Any
) -> NATS:
    """A client with the federation's options; `events` (by callback name, e.g.
    "reconnected") are set when nats-py calls that callback."""
    callbacks: dict[str, Callable[..., Awaitable[None]]] = {}
    for name, event in (events or {}).items():

        async def fire(*_: object, event: asyncio.Event = event) -> None:
            event.set()

        callbacks[f"{name}_cb"] = fire
    return await nats.connect(servers=servers, **{**FEDERATION_OPTIONS, **callbacks, **options})


@asynccontextmanager
async def client(servers: list[str], **options: Any) -> AsyncIterator[NATS]:
    """`connect`, closed on the way out."""
    nc = await connect(servers, **options)
    try:
        yield nc
    finally:
        await nc.close()


async def add_stream(js: JetStreamContext) -> StreamInfo:
    return await js.add_stream(
        name=STREAM, subjects=SUBJECTS, num_replicas=3, storage=Storage.FILE, duplicate_window=120
    )


NO_LISTENER = (nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError)
"""A 503 from the client's server: no stream (on publish) or consumer (on fetch) listens
there yet. A new leader's interest travels the routes apart from its answer to the create
and nothing announces its arrival, so the first write or fetch may meet it."""


async def publish_once(js: JetStreamContext, subject: str, data: bytes, msg_id: str) -> PubAck:
    """Publish until a PubAck comes, always with the same `Nats-Msg-Id`: a message whose
    ack was lost is stored once all the same (the stream's duplicate window)."""
    deadline = time.monotonic() + RETRY_DEADLINE
    while True:
        try:
            return await js.publish(subject, data, timeout=1.0, headers={"Nats-Msg-Id": msg_id})
        except (nats.errors.TimeoutError, *NO_LISTENER):
            if time.monotonic() > deadline:
                raise


async def through(call: Callable[[], Awaitable[T]]) -> T:
    """`call`, the first write into a stream or fetch from a consumer made moments ago,
    retried while it meets `NO_LISTENER` (each try a round trip to the server)."""
    deadline = time.monotonic() + RETRY_DEADLINE
    while True:
        try:
            return await call()
        except NO_LISTENER:
            if time.monotonic() > deadline:
                raise


async def stream_and_bystander(cluster: NatsCluster) -> tuple[StreamInfo, int]:
    """The stream and agent b's durable consumer, made through a client closed after (one
    left on a node about to freeze would try it again when reconnecting), and a node that
    leads neither."""
    async with client(cluster.urls) as admin:
        js = admin.jetstream()
        stream = await add_stream(js)
        sub = await js.pull_subscribe(INBOX, durable="agent-b", stream=STREAM)
        consumer = await sub.consumer_info()
    assert stream.cluster is not None and consumer.cluster is not None
    leaders = {stream.cluster.leader, consumer.cluster.leader}
    for node in cluster.nodes:
        if node.name not in leaders:
            return stream, node.index
    raise AssertionError(f"every node leads one of {leaders}")


def first(cluster: NatsCluster, i: int) -> list[str]:
    """Every node's URL, node i's first (for `dont_randomize`)."""
    return [cluster.url(i), *(url for url in cluster.urls if url != cluster.url(i))]


async def fetch(sub: JetStreamContext.PullSubscription, n: int) -> list[Msg]:
    """Exactly `n` messages: `fetch(n)` returns what the consumer has ready, maybe fewer."""
    got: list[Msg] = []
    with anyio.fail_after(RETRY_DEADLINE):
        while len(got) < n:
            got += await through(partial(sub.fetch, n - len(got), timeout=RETRY_DEADLINE))
    return got


async def keys_caught_up(kv: KeyValue, expected: list[str]) -> bool:
    """Whether `kv.keys()` comes to list `expected`. It reads through a new one-replica
    consumer that may sit on a follower a write behind (then it lists fewer keys, or raises
    NoKeysError): asked again while it does, each try a round trip."""
    deadline = time.monotonic() + RETRY_DEADLINE
    while time.monotonic() < deadline:
        with contextlib.suppress(nats.js.errors.NoKeysError):
            if sorted(await kv.keys()) == expected:
                return True
    return False


async def stored_on(cluster: NatsCluster, i: int, stream: str) -> int:
    """How many messages node i's own replica of `stream` holds (its monitoring port)."""
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{cluster.nodes[i].monitor_url}/jsz", params={"streams": "true"})
    page.raise_for_status()
    for account in page.json()["account_details"]:
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                return int(detail["state"]["messages"])
    raise AssertionError(f"node {i} holds no replica of {stream}")


async def test_a_replicated_stream_stores_a_repeated_message_id_once(
    nats_cluster: NatsCluster,
) -> None:
    async with client(nats_cluster.urls) as nc:
        js = nc.jetstream()
        info = await add_stream(js)
        assert info.config.num_replicas == 3
        assert info.config.duplicate_window == 120.0
        assert info.cluster is not None and info.cluster.replicas is not None
        assert {info.cluster.leader, *(r.name for r in info.cluster.replicas)} == NODES

        first = await publish_once(js, INBOX, b"hello", "m-1")
        again = await js.publish(INBOX, b"hello", headers={"Nats-Msg-Id": "m-1"})
        other = await js.publish(INBOX, b"hello", headers={"Nats-Msg-Id": "m-2"})

        assert first.duplicate is None  # not False: the field is absent
        assert again.duplicate is True and again.seq == first.seq
        assert other.duplicate is None and other.seq == first.seq + 1
        assert (await js.stream_info(STREAM)).state.messages == 2


async def test_an_unacked_message_is_redelivered_and_an_acked_one_is_not(
    nats_cluster: NatsCluster,
) -> None:
    async with client(nats_cluster.urls) as nc:
        js = nc.jetstream()
        await add_stream(js)
        sub = await js.pull_subscribe(
            INBOX, durable="agent-b", stream=STREAM, config=ConsumerConfig(ack_wait=1.0)
        )
        await publish_once(js, INBOX, b"one", "one")
        await publish_once(js, "hive.t.msg.c", b"not for b", "c")
        await publish_once(js, INBOX, b"two", "two")

        one, two = await fetch(sub, 2)
        assert (one.data, two.data) == (b"one", b"two")
        await one.ack_sync()

        # Blocks until ack_wait has run out for "two" and the server sends it again.
        [again] = await sub.fetch(1, timeout=5)
        assert again.data == b"two"
        assert again.metadata.num_delivered == 2
        await again.ack_sync()

        # "one" was delivered as long ago: unacked, it would come back now.
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=1.5)
        consumer = await sub.consumer_info()
        assert consumer.config.filter_subject == INBOX
        assert consumer.num_ack_pending == 0 and consumer.num_pending == 0


async def test_a_killed_node_leaves_a_quorum_and_rejoins_when_restarted(
    nats_cluster: NatsCluster,
) -> None:
    stream, victim = await stream_and_bystander(nats_cluster)
    reconnected = asyncio.Event()
    member = await connect(
        first(nats_cluster, victim), {"reconnected": reconnected}, dont_randomize=True
    )
    try:
        js = member.jetstream()
        await publish_once(js, INBOX, b"before", "before")
        nats_cluster.kill(victim)
        with anyio.fail_after(RETRY_DEADLINE):
            await reconnected.wait()
        for n in range(3):
            await publish_once(js, INBOX, b"while down %d" % n, f"down-{n}")
        sub = await js.pull_subscribe(INBOX, durable="agent-b", stream=STREAM)
        msgs = await fetch(sub, 4)
        assert [m.data for m in msgs] == [b"before"] + [b"while down %d" % n for n in range(3)]
        for m in msgs:
            await m.ack_sync()
    finally:
        await member.close()

    nats_cluster.restart(victim)
    assert stream.cluster is not None
    group = re.escape(str(stream.cluster.raft_group))
    caught_up = re.compile(rf"RAFT \[\w+ - {group}\] Canceling catchup subscription")
    await anyio.to_thread.run_sync(
        nats_cluster.wait_for_log, victim, caught_up, "the stream's catch-up"
    )
    assert await stored_on(nats_cluster, victim, STREAM) == 4
    async with client([nats_cluster.url(victim)]) as back:
        assert (await publish_once(back.jetstream(), INBOX, b"after", "after")).seq == 5


async def test_a_client_carries_on_past_a_frozen_node(nats_cluster: NatsCluster) -> None:
    _, frozen = await stream_and_bystander(nats_cluster)
    events = {"disconnected": asyncio.Event(), "reconnected": asyncio.Event()}
    member = await connect(first(nats_cluster, frozen), events, dont_randomize=True)
    try:
        js = member.jetstream()
        sub = await js.pull_subscribe(INBOX, durable="agent-b", stream=STREAM)
        nats_cluster.pause(frozen)
        # The socket stays open: only the missed pings (1 s apart, 2 allowed) show it.
        with anyio.fail_after(RETRY_DEADLINE):
            await events["reconnected"].wait()
        assert events["disconnected"].is_set()
        assert member.connected_url is not None
        assert member.connected_url.port != nats_cluster.nodes[frozen].client_port
        await publish_once(js, INBOX, b"past the freeze", "frozen-1")
        [msg] = await fetch(sub, 1)
        assert msg.data == b"past the freeze"
        await msg.ack_sync()
        nats_cluster.resume(frozen)
        await publish_once(js, INBOX, b"thawed", "frozen-2")
        assert [m.data for m in await fetch(sub, 1)] == [b"thawed"]
    finally:
        await member.close()


async def test_a_kv_key_is_created_once_and_updated_only_from_its_last_revision(
    nats_cluster: NatsCluster,
) -> None:
    async with client(nats_cluster.urls) as nc:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="fed", replicas=3, history=5)
        assert (await kv.status()).stream_info.config.num_replicas == 3
        watcher = await kv.watch("agents.>")
        # Nothing stored yet: the watch opens with its end-of-history marker.
        assert await watcher.updates(timeout=5) is None  # type: ignore[no-untyped-call]

        rev = await through(lambda: kv.create("agents.alice", b"host-a"))
        with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
            await kv.create("agents.alice", b"host-b")
        newer = await kv.update("agents.alice", b"host-b", last=rev)
        with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
            await kv.update("agents.alice", b"host-c", last=rev)
        await kv.create("agents.bob", b"host-a")

        entry = await kv.get("agents.alice")
        assert (entry.value, entry.revision) == (b"host-b", newer)
        seen = [
            await watcher.updates(timeout=5)  # type: ignore[no-untyped-call]
            for _ in range(3)
        ]
        assert [(e.key, e.value, e.revision) for e in seen if e is not None] == [
            ("agents.alice", b"host-a", rev),
            ("agents.alice", b"host-b", newer),
            ("agents.bob", b"host-a", newer + 1),
        ]
        await watcher.stop()  # type: ignore[no-untyped-call]
        assert await keys_caught_up(kv, ["agents.alice", "agents.bob"])


async def test_the_object_store_keeps_a_mebibyte_on_three_replicas(
    nats_cluster: NatsCluster,
) -> None:
    blob = os.urandom(1 << 20)
    async with client(nats_cluster.urls) as nc:
        js = nc.jetstream()
        store = await js.create_object_store("blobs", replicas=3)
        assert (await store.status()).stream_info.config.num_replicas == 3
        info = await through(lambda: store.put("bundle.tar", blob))
        assert info.size == len(blob) and info.chunks is not None and info.chunks > 1
        got = await store.get("bundle.tar")
        assert got.data == blob


USERS = {
    "admin": User("admin-pw", [">"], [">"]),
    "member": User("member-pw", MEMBER_PUBLISH, MEMBER_SUBSCRIBE),
    "ops": User("ops-pw", ["hive.ops.>"], ["_INBOX.>", "hive.ops.>"]),
}
WITHOUT = {
    **{
        entry: User("pw", [e for e in MEMBER_PUBLISH if e != entry], MEMBER_SUBSCRIBE)
        for entry in MEMBER_PUBLISH
    },
    "_INBOX.>": User("pw", MEMBER_PUBLISH, ["hive.nothing"]),
}
"""The member's allow lists less one entry each (the subscribe list less its only one)."""
LESSER = {entry: f"less{n}" for n, entry in enumerate(WITHOUT)}  # their user names


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    users = {**USERS, **{LESSER[entry]: user for entry, user in WITHOUT.items()}}
    with NatsCluster(tmp_path_factory.mktemp("auth"), users=users) as cluster:
        yield cluster


async def next_error(errors: asyncio.Queue[Exception]) -> Exception:
    """The next error nats-py handed to `error_cb=errors.put`."""
    with anyio.fail_after(5):
        return await errors.get()


async def refused(servers: list[str], **options: Any) -> nats.errors.Error:
    """The error a connect with a wrong password raises. The client is closed after: a
    failed `connect` leaves its socket open otherwise."""
    nc = NATS()
    try:
        await nc.connect(servers=servers, user="member", password="wrong", **options)
    except nats.errors.Error as error:
        return error
    finally:
        await nc.close()
    raise AssertionError("a wrong password was let in")


async def test_a_wrong_password_is_refused_at_connect(auth_cluster: NatsCluster) -> None:
    error = await refused(auth_cluster.urls, allow_reconnect=False)
    # The generic class, not nats.errors.AuthorizationError: the connect path does not map it.
    assert type(error) is nats.errors.Error
    assert str(error) == "nats: 'Authorization Violation'"

    # Reconnecting, nats-py retries a refused login like a dead server; capping the attempts
    # per server is what ends it.
    errors: asyncio.Queue[Exception] = asyncio.Queue()
    options = {**FEDERATION_OPTIONS, "max_reconnect_attempts": 1, "reconnect_time_wait": 0.05}
    error = await refused(auth_cluster.urls, **options, error_cb=errors.put)
    assert type(error) is nats.errors.NoServersError
    assert str(await next_error(errors)) == "nats: 'Authorization Violation'"


async def test_a_subject_outside_the_allow_lists_is_a_permissions_violation(
    auth_cluster: NatsCluster,
) -> None:
    errors: asyncio.Queue[Exception] = asyncio.Queue()
    async with client(auth_cluster.urls, user="ops", password="ops-pw", error_cb=errors.put) as nc:
        await nc.publish("hive.secret", b"x")
        denied = await next_error(errors)
        assert type(denied) is nats.errors.Error
        # nats-py lowercases the server's error line, subject included.
        assert str(denied) == 'nats: permissions violation for publish to "hive.secret"'
        with pytest.raises(nats.errors.TimeoutError):
            await nc.request("hive.secret", b"x", timeout=0.5)
        assert "hive.secret" in str(await next_error(errors))

        await nc.subscribe("hive.secret")
        assert str(await next_error(errors)) == (
            'nats: permissions violation for subscription to "hive.secret"'
        )
        sub = await nc.subscribe("hive.ops.x")
        await nc.publish("hive.ops.x", b"allowed")
        assert (await sub.next_msg(timeout=5)).data == b"allowed"
        assert nc.is_connected and errors.empty()


async def test_the_minimal_allow_lists_cover_streams_consumers_kv_and_objects(
    auth_cluster: NatsCluster,
) -> None:
    async with client(auth_cluster.urls, user="member", password="member-pw") as nc:
        js = nc.jetstream()
        await add_stream(js)
        sub = await js.pull_subscribe(INBOX, durable="agent-b", stream=STREAM)
        await publish_once(js, INBOX, b"hi", "auth-1")
        [msg] = await fetch(sub, 1)
        await msg.ack_sync()
        assert (await sub.consumer_info()).num_ack_pending == 0

        kv = await js.create_key_value(bucket="fed", replicas=3)
        await through(lambda: kv.create("agents.alice", b"host-a"))
        watcher = await kv.watch("agents.>")
        entry = await watcher.updates(timeout=5)  # type: ignore[no-untyped-call]
        if entry is None:  # its consumer sits on a follower a write behind: the end marker
            entry = await watcher.updates(timeout=5)  # type: ignore[no-untyped-call]
        assert entry is not None and entry.value == b"host-a"
        await watcher.stop()  # type: ignore[no-untyped-call]

        store = await js.create_object_store("blobs", replicas=3)
        blob = os.urandom(BIG)
        await through(lambda: store.put("big", blob))
        assert (await store.get("big")).data == blob


@pytest.mark.parametrize("entry", list(WITHOUT))
async def test_each_minimal_allow_list_entry_is_needed(
    auth_cluster: NatsCluster, entry: str
) -> None:
    async with client(auth_cluster.urls, user="admin", password="admin-pw") as admin:
        ajs = admin.jetstream()
        await add_stream(ajs)
        await ajs.create_key_value(bucket="fed", replicas=3)
        await ajs.create_object_store("blobs", replicas=3)
        await publish_once(ajs, INBOX, entry.encode(), entry)

    errors: asyncio.Queue[Exception] = asyncio.Queue()
    async with client(
        auth_cluster.urls, user=LESSER[entry], password="pw", error_cb=errors.put
    ) as nc:
        js = nc.jetstream(timeout=0.5)
        with pytest.raises(TimeoutError):  # nats.errors.TimeoutError is one
            await NEEDS[entry](js)
    assert "permissions violation" in str(await next_error(errors))


async def _ack(js: JetStreamContext) -> None:
    sub = await js.pull_subscribe(INBOX, durable="acker", stream=STREAM)
    [msg] = await fetch(sub, 1)
    await msg.ack_sync(timeout=0.5)


async def _kv_put(js: JetStreamContext) -> int:
    return await (await js.key_value("fed")).put("agents.x", b"x")


async def _object_put(js: JetStreamContext) -> object:
    return await (await js.object_store("blobs")).put("o", b"x")


async def _big_object_get(js: JetStreamContext) -> object:
    store = await js.object_store("blobs")
    await store.put("big", os.urandom(BIG))
    with anyio.fail_after(1):  # stalls: the server waits for a flow-control reply
        return await store.get("big")


NEEDS: dict[str, Callable[[JetStreamContext], Awaitable[object]]] = {
    "$JS.API.>": lambda js: js.stream_info(STREAM),
    "$JS.ACK.>": _ack,
    "$JS.FC.>": _big_object_get,
    "hive.t.msg.>": lambda js: js.publish(INBOX, b"x"),
    "$KV.fed.>": _kv_put,
    "$O.blobs.>": _object_put,
    "_INBOX.>": lambda js: js.stream_info(STREAM),
}
"""What fails, with a timeout, without each entry of the member's allow lists."""
