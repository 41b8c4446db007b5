"""Trust between hosts: NATS users held to their own subjects, forged origins refused, and
one name in the hive however many hosts claim it at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from hive_core.federation import names
from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.dashboard import session, stream
from tests.multihost.hives import (
    HIVE_ID,
    Hosts,
    host_env,
    hosts_of,
    kept_out,
    login_holds,
    with_ada_and_bea,
    with_users,
)
from tests.multihost.nats_cluster import NatsCluster, User

WAIT = 20.0


async def test_a_forged_origin_is_refused_and_the_real_ones_arrive(secured: NatsCluster) -> None:
    hosts = Hosts(secured, {h: with_users(secured, h) for h in ("a", "b", "c")})
    try:
        with_ada_and_bea(hosts)
        forged = (
            names.Forwarded(
                origin="a", id=1, sender="ada", recipient="bea", body="forged", sent_at=1.0
            )
            .model_dump_json()
            .encode()
        )
        nc = await nats.connect(
            secured.urls[0].replace("nats://", "nats://c:pw-c@"), inbox_prefix="_INBOX_c"
        )
        try:
            js = nc.jetstream()
            # c may not publish as a: NATS itself refuses the subject.
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await js.publish(names.msg_subject(HIVE_ID, "b", "a"), forged, timeout=2)
            # On its own subject, c's payload claiming a is refused by b.
            await js.publish(names.msg_subject(HIVE_ID, "b", "c"), forged, timeout=5)
            # ... and so is a message from an agent c does not run.
            sneaky = forged.replace(b'"origin":"a"', b'"origin":"c"')
            await js.publish(names.msg_subject(HIVE_ID, "b", "c"), sneaky, timeout=5)
            # ... and a helper event from anyone but c's hive-core itself.
            event = helper.ApprovalResolved(id=1, approval_kind="spawn", agent="bea",
                                            status="approved")  # fmt: skip
            posing = names.Forwarded(origin="c", id=2, sender="operator", recipient="bea",
                                     body="approved", sent_at=1.0, event=event)  # fmt: skip
            await js.publish(
                names.msg_subject(HIVE_ID, "b", "c"), posing.model_dump_json().encode(), timeout=5
            )
            # Requests: c may not ask as a, and b runs only lifecycle verbs on its own agents.
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await nc.request(names.rpc_subject(HIVE_ID, "b", "a"), b"{}", timeout=2)
            asks = [({"cmd": "list"}, "verb_not_allowed"),
                    ({"cmd": "approve", "id": 1}, "invalid_request"),  # names no host
                    ({"cmd": "spawn", "name": "evil", "host": "c"}, "invalid_request"),
                    ({"cmd": "request_spawn", "name": "evil", "host": "b",
                      "requester": "ada"}, "forbidden"),  # a's agent, asked by c
                    ({"cmd": "answer", "id": 1, "answer": "x", "host": "b",
                      "answerer": "ada"}, "forbidden"),  # the same
                    ({"cmd": "stop", "name": "ada"}, "unknown_agent")]  # fmt: skip
            for ask, code in asks:
                subject = names.rpc_subject(HIVE_ID, "b", "c")
                reply = await nc.request(subject, json.dumps(ask).encode(), timeout=10)
                assert json.loads(reply.data)["code"] == code
        finally:
            await nc.close()
        async with HiveClient(hosts["a"].agent_sock("ada")) as ada:
            await ada.call(rq.Send(cmd="send", to="bea", body="real"), rs.Sent)
        async with HiveClient(hosts["b"].agent_sock("bea")) as bea:
            got = await bea.call(rq.Recv(cmd="recv", wait_seconds=WAIT), rs.Messages)
        # One stream, read in order: the forged ones came first and were refused.
        assert [(m.sender, m.body) for m in got.messages] == [("ada", "real")]
        info = json.loads(hosts["b"].cli("hosts", "--json").stdout)["hosts"][0]
        assert (info["received"], info["refused"]) == (1, 3)
        log = hosts["b"].log()
        assert "it claims to come from host a" in log
        assert "its sender ada is not on that host (a)" in log
        assert "an event sent as operator" in log
        # The hosts' items travel under these permissions too.
        async with session(hosts["a"]) as on_a, stream(on_a, "approval_added") as seen:
            queued = hosts["b"].cli("request-spawn", "later", "--host", "b")
            assert queued.returncode == 0, queued.stderr
            await seen.until("approval_added", approval__host="b", approval__agent="later")
    finally:
        hosts.close()


async def test_wrong_credentials_keep_a_host_out(secured: NatsCluster) -> None:
    hosts = Hosts(secured, {"a": with_users(secured, "a", password="wrong")})
    try:
        hosts.start()
        kept_out(hosts, "a")
        refused = hosts["a"].cli("spawn", "solo")  # a name needs the hive's directory
        assert refused.returncode == 1
        assert "out of reach (NATS link down)" in refused.stderr
    finally:
        hosts.close()


def nats_nkey(seed: Path) -> str:
    """`hive-core nats-nkey SEED`'s output: the seed's public key."""
    made = subprocess.run([sys.executable, "-m", "hive_core", "nats-nkey", str(seed)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


async def test_hosts_log_in_with_their_nkeys(tmp_path: Path) -> None:
    """Each host signs in with its own NKey seed (`hive-core nats-nkey` makes it and prints
    the key the server lists), held to its permissions; a seed the server does not list
    keeps its host out."""
    seeds = {h: tmp_path / f"{h}.nk" for h in ("a", "b", "x")}
    keys = {host: nats_nkey(seed) for host, seed in seeds.items()}
    for host, seed in seeds.items():
        assert keys[host].startswith("U") and oct(seed.stat().st_mode & 0o777) == "0o600"
    assert nats_nkey(seeds["a"]) == keys["a"]  # read, not made anew
    signed = {
        h: User("", *names.permissions(HIVE_ID, h), allow_responses=True, nkey=keys[h])
        for h in ("a", "b")
    }
    with NatsCluster(tmp_path / "nats", users=signed) as cluster:
        envs = {h: {**host_env(cluster, h), "HIVE_NATS_NKEY_SEED": str(seeds[h])} for h in "ab"}
        hosts = Hosts(cluster, envs)
        stranger = Hosts(cluster, {"x": {**host_env(cluster, "x"),
                                         "HIVE_NATS_NKEY_SEED": str(seeds["x"])}})  # fmt: skip
        await login_holds(hosts, stranger, "signed")


@pytest.fixture
def hosts(nats_cluster: NatsCluster) -> Iterator[Hosts]:
    with hosts_of(nats_cluster) as joined:
        yield joined


def test_one_name_spawned_on_two_hosts_at_once_is_one_agent(hosts: Hosts) -> None:
    results = {}

    def spawn(host: str) -> None:
        results[host] = hosts[host].cli("spawn", "twin", "--host", host)

    threads = [threading.Thread(target=spawn, args=(h,)) for h in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    codes = sorted(r.returncode for r in results.values())
    assert codes == [0, 1], {h: (r.returncode, r.stderr) for h, r in results.items()}
    loser = next(h for h, r in results.items() if r.returncode)
    winner = "b" if loser == "a" else "a"
    assert f"agent 'twin' already exists on host {winner}" in results[loser].stderr
    assert "twin" in hosts.local_agents(winner)
    assert "twin" not in hosts.local_agents(loser)
