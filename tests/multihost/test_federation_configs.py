"""The manager changes the config of another host's agent: a working copy here, kept on
that host's deployed commit through the config store, and a proposal shipped to the agent's
host as a bundle and decided there, under the NATS permissions hive-core documents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3

import nats
from nats.aio.client import Client
from nats.js.api import ObjectMeta

from hive_core.federation import names
from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from hive_share.responses import Error
from tests.e2e.dashboard import session, stream
from tests.git import git
from tests.multihost.hives import HIVE_ID, HOSTS, Hosts, change, deployed, with_users
from tests.multihost.nats_cluster import NatsCluster

WAIT = 20.0


def cli(hosts: Hosts, host: str, *args: str) -> str:
    result = hosts[host].cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_the_manager_changes_another_hosts_agents_config(secured: NatsCluster) -> None:
    hosts = Hosts(secured, {h: with_users(secured, h) for h in HOSTS})
    try:
        hosts.start()
        hosts.linked()
        manager = next(h for h in HOSTS if "hm1nd" in hosts.local_agents(h))
        there, third = (h for h in HOSTS if h != manager)
        async with (
            session(hosts[manager]) as on_m,
            stream(on_m, "container_state_changed") as seen,
        ):
            hosts.spawn_idle(there, "tess", "tom")
            for agent in ("tess", "tom"):  # shared: the entry here names the deployed commit
                first = deployed(hosts, there, agent)
                await seen.until(
                    "container_state_changed", agent__name=agent, agent__deployed_commit=first
                )
        first = deployed(hosts, there, "tess")
        cli(hosts, manager, "stop", "hm1nd")  # the test reads the manager's inbox
        remote = hosts[manager].state_dir / "remote"
        async with HiveClient(hosts[manager].manager_sock) as hm1nd:
            me = await hm1nd.call(rq.Whoami(cmd="whoami"), rs.Identity)
            assert me.remote_config_root == str(remote)
            early = await hm1nd.request(
                rq.RequestApplyCommit(cmd="request_apply_commit", agent="tess", commit=first)
            )
            assert isinstance(early, Error) and early.code == "not_found", early
            assert "request_init_config('tess') first" in early.error

            init = rq.RequestInitConfig(cmd="request_init_config", name="tess")
            repos = await hm1nd.call(init, rs.ConfigRepos)
            proposed = remote / "tess" / "proposed"
            assert (repos.proposed, repos.applied_commit, repos.seeded) == (
                str(proposed),
                first,
                True,
            )
            assert git(proposed, "rev-parse", "applied/main") == first
            sha = change(proposed, "# tess answers in tables\n")
            asked = rq.RequestApplyCommit(cmd="request_apply_commit", agent="tess", commit=sha)
            approval = (await hm1nd.call(asked, rs.ApprovalResult)).approval
            assert (approval.host, approval.kind, approval.agent, approval.commit) == (
                there,
                "apply_commit",
                "tess",
                sha,
            )
            assert approval.requester == "hm1nd"
            shown = cli(hosts, third, "show", str(approval.id), "--host", there)
            assert "+# tess answers in tables" in shown
            assert await _proposals_in_store(secured, third) == []  # taken out once queued

            done = cli(hosts, third, "approve", str(approval.id), "--host", there)
            assert done.strip() == f"approved {approval.id}: deployed {sha[:12]} to tess"
            assert deployed(hosts, there, "tess") == sha
            told = await hm1nd.call(rq.Recv(cmd="recv", wait_seconds=WAIT), rs.Messages)
            (news,) = told.messages
            assert isinstance(news.event, helper.ApprovalResolved), news
            assert (news.event.id, news.event.host, news.event.status) == (
                approval.id,
                there,
                "approved",
            )
            # Told, the manager finds the deployed commit in its working copy's remote.
            assert git(remote / "tess" / "applied", "rev-parse", "main") == sha
            git(proposed, "pull", "-q", "--rebase", "applied", "main")
            second = change(proposed, "# and in short lists\n")
            asked = rq.RequestApplyCommit(cmd="request_apply_commit", agent="tess", commit=second)
            again = (await hm1nd.call(asked, rs.ApprovalResult)).approval
            assert (again.host, again.commit) == (there, second)
            cli(hosts, manager, "deny", str(again.id), "--host", there, "--reason", "enough")

            missing = await hm1nd.request(
                rq.RequestApplyCommit(cmd="request_apply_commit", agent="tess", commit="0" * 40)
            )
            assert isinstance(missing, Error) and missing.code == "invalid_request", missing
            assert "is not in tess's proposed repo" in missing.error

            # Another host writes over tom's bundle in the store: the manager's copy refuses
            # it, as it is not the bundle tom's host named in the directory.
            await _forge(secured, third, names.config_object(there, "tom"))
            tom = rq.RequestInitConfig(cmd="request_init_config", name="tom")
            forged = await hm1nd.request(tom)
            assert isinstance(forged, Error) and forged.code == "backend", forged
            assert f"is not the bundle host {there}'s directory entry names" in forged.error
            # The manager runs the lifecycle of another host's agent there, as itself.
            started = await hm1nd.call(rq.Start(cmd="start", name="tess"), rs.Done)
            assert started.detail == "started tess"
            assert "tess" in hosts.running_agents(there)
            killed = await hm1nd.call(rq.Kill(cmd="kill", name="tess"), rs.Done)
            assert killed.detail == "killed tess"
            assert "tess" not in hosts.running_agents(there)
        assert _actors(hosts, there, "tess") == [("start", "hm1nd"), ("kill", "hm1nd")]
        listed = json.loads(cli(hosts, third, "list", "--json"))
        assert {r["name"]: r.get("deployed_commit") for r in listed}["tess"] == sha
        await _forged_proposals_refused(secured, third, there, second)

        # A config left in the store for an agent the host no longer has (destroyed just
        # before a restart) is taken out when it starts again; its agents' stay.
        ghost = names.config_object(there, "ghost")
        await _forge(secured, there, ghost)
        assert hosts[there].stop() == 0
        hosts[there].start()
        await _deleted(secured, third, ghost)
        kept = await _store_names(secured, third)
        assert {names.config_object(there, "tess"), names.config_object(there, "tom")} <= kept
    finally:
        hosts.close()


async def _store_names(cluster: NatsCluster, host: str) -> set[str]:
    """The objects in the config store, as `host` lists them."""
    nc = await _connect(cluster, host)
    try:
        store = await nc.jetstream().object_store(names.config_bucket(HIVE_ID))
        return {o.name for o in await store.list(ignore_deletes=True) if o.name}
    finally:
        await nc.close()


async def _deleted(cluster: NatsCluster, host: str, key: str) -> None:
    """Return once the store marks `key` deleted (bounded), as `host` watches it."""
    nc = await _connect(cluster, host)
    try:
        store = await nc.jetstream().object_store(names.config_bucket(HIVE_ID))
        watcher = await store.watch()
        async with asyncio.timeout(WAIT):
            async for info in watcher:  # the current objects, a None, then the changes
                if info is not None and info.name == key and info.deleted:
                    break
        await watcher.stop()  # type: ignore[no-untyped-call]
    finally:
        await nc.close()


async def _connect(cluster: NatsCluster, host: str) -> Client:
    return await nats.connect(
        cluster.urls[0].replace("nats://", f"nats://{host}:pw-{host}@"),
        inbox_prefix=names.inbox_prefix(host),
    )


def _actors(hosts: Hosts, host: str, agent: str) -> list[tuple[str, str]]:
    """Who started and stopped `agent` on `host`, as its hive-core recorded it."""
    db = hosts[host].state_dir / "hive.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT action, actor FROM transients WHERE agent = ? AND action IN "
            "('start', 'kill') ORDER BY id",
            (agent,),
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


async def _proposals_in_store(cluster: NatsCluster, host: str) -> list[str]:
    nc = await nats.connect(
        cluster.urls[0].replace("nats://", f"nats://{host}:pw-{host}@"),
        inbox_prefix=names.inbox_prefix(host),
    )
    try:
        store = await nc.jetstream().object_store(names.config_bucket(HIVE_ID))
        listed = await store.list(ignore_deletes=True)
        return [o.name for o in listed if o.name and "/proposals/" in o.name]
    finally:
        await nc.close()


async def _forge(cluster: NatsCluster, host: str, key: str) -> str:
    """Put a bundle of no repo under `key` as host `host`; its digest."""
    nc = await nats.connect(
        cluster.urls[0].replace("nats://", f"nats://{host}:pw-{host}@"),
        inbox_prefix=names.inbox_prefix(host),
    )
    try:
        store = await nc.jetstream().object_store(names.config_bucket(HIVE_ID))
        info = await store.put(key, b"# v2 git bundle\nforged\n", ObjectMeta(name=key))
        return info.digest or ""
    finally:
        await nc.close()


async def _forged_proposals_refused(
    cluster: NatsCluster, forger: str, there: str, commit: str
) -> None:
    """Host `forger` asks `there` to queue a commit: for the manager of another host, from
    another host's bundle, or with a digest that is not its bundle's; each is refused."""
    nonce = secrets.token_hex(16)
    own = f"{forger}/proposals/{nonce}"
    digest = await _forge(cluster, forger, own)
    base = {"cmd": "request_apply_commit", "host": there, "agent": "tess", "commit": commit,
            "ref": f"refs/proposals/{nonce}", "requester": "operator"}  # fmt: skip
    asks = [
        ({"cmd": "kill", "name": "tess", "by": "hm1nd"}, "forbidden"),  # not its manager
        ({"cmd": "destroy", "name": "tess", "by": "hm1nd"}, "forbidden"),
        ({"bundle": f"{there}/proposals/{nonce}", "digest": digest}, "forbidden"),
        ({"bundle": own, "digest": digest, "requester": "hm1nd"}, "forbidden"),
        ({"bundle": own, "digest": "SHA-256=" + "A" * 43 + "="}, "backend"),
        ({"bundle": own, "digest": digest, "ref": "refs/heads/main"}, "malformed"),
        ({"bundle": own, "digest": digest, "agent": "zed"}, "unknown_agent"),
        ({"bundle": own, "digest": digest, "host": forger}, "invalid_request"),
    ]
    nc = await nats.connect(
        cluster.urls[0].replace("nats://", f"nats://{forger}:pw-{forger}@"),
        inbox_prefix=names.inbox_prefix(forger),
    )
    try:
        for change_, code in asks:
            subject = names.rpc_subject(HIVE_ID, there, forger)
            reply = await nc.request(subject, json.dumps({**base, **change_}).encode(), timeout=10)
            assert json.loads(reply.data)["code"] == code, (change_, reply.data)
        # Its own bundle of no repo, with its digest: git refuses it, nothing is queued.
        ask = {**base, "bundle": own, "digest": digest}
        reply = await nc.request(
            names.rpc_subject(HIVE_ID, there, forger), json.dumps(ask).encode(), timeout=10
        )
        assert json.loads(reply.data)["code"] == "invalid_request", reply.data
    finally:
        await nc.close()
