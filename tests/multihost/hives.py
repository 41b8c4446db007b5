"""Several hive-cores joined over one NATS JetStream cluster, on this machine.

Each host is a `tests.e2e.hive.Hive` (its own state and run dirs, the local backend, real
harnesses) started with `HIVE_NATS_URL` naming every node of the cluster. Waits read the
daemons' `STATUS=` lines, which count the hosts and the other hosts' agents each one sees.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hive_core.federation import names
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.hive import Hive, short_tmp
from tests.git import git
from tests.multihost.nats_cluster import NatsCluster, User

HIVE_ID = "t"
HOSTS = ("a", "b", "c")
STATUS = re.compile(r"; NATS (\w+), (\d+) hosts?, (\d+) agents? elsewhere$")


@dataclass(frozen=True)
class Seen:
    """What one host's status line says of the hive."""

    link: str
    hosts: int
    elsewhere: int


def seen(line: str) -> Seen | None:
    found = STATUS.search(line)
    if found is None:
        return None
    return Seen(found[1], int(found[2]), int(found[3]))


def users(*hosts: str) -> dict[str, User]:
    """A NATS user per host, with exactly the permissions hive-core documents."""
    found = {}
    for host in hosts:
        publish, subscribe = names.permissions(HIVE_ID, host)
        found[host] = User(f"pw-{host}", publish, subscribe, allow_responses=True)
    return found


def with_users(cluster: NatsCluster, host: str, password: str | None = None) -> dict[str, str]:
    """`host`'s settings, logging in as its user (`users`)."""
    login = f"{host}:{password or f'pw-{host}'}@"
    urls = [u.replace("nats://", f"nats://{login}") for u in cluster.urls]
    return host_env(cluster, host, urls)


def host_env(cluster: NatsCluster, host: str, urls: Sequence[str] | None = None) -> dict[str, str]:
    return {
        "HIVE_NATS_URL": ",".join(urls or cluster.urls),
        "HIVE_HIVE_ID": HIVE_ID,
        "HIVE_HOST_ID": host,
        "HIVE_NATS_REPLICAS": str(len(cluster.nodes)),
    }


class Hosts:
    """The hive-cores of one hive, by host id."""

    def __init__(self, cluster: NatsCluster | None, envs: Mapping[str, Mapping[str, str]]) -> None:
        self.cluster = cluster
        self.root = short_tmp()
        self.by_host: dict[str, Hive] = {}
        for host, env in envs.items():
            (self.root / host).mkdir()
            self.by_host[host] = Hive(self.root / host, env)

    def __getitem__(self, host: str) -> Hive:
        return self.by_host[host]

    def start(self) -> None:
        for hive in self.by_host.values():
            hive.start()

    def wait_until(self, host: str, what: str, holds: Callable[[Seen], bool]) -> Seen:
        """Read `host`'s status lines until `holds(Seen)` is true (bounded)."""

        def on_line(text: str) -> bool:
            found = seen(text)
            return found is not None and holds(found)

        found = seen(self[host].wait_for_status(on_line, what))
        assert found is not None
        return found

    def linked(self, count: int | None = None) -> None:
        """Every host's link is up and it has heard from all the others."""
        total = len(self.by_host) if count is None else count
        for host in self.by_host:
            self.wait_until(
                host, f"NATS up, {total} hosts", lambda s: s.link == "up" and s.hosts >= total
            )

    def spawn_idle(self, host: str, *names: str) -> None:
        """Spawn agents on `host` (named: the hive would place them by free places), then
        stop their harnesses: the socket stays, and the test is the agent."""
        for name in names:
            for args in (("spawn", name, "--host", host), ("stop", name)):
                result = self[host].cli(*args)
                assert result.returncode == 0, result.stderr
            for hive in self.by_host.values():  # what each host said of it, before the
                hive.drain_notify()  # kernel's queue of them fills and later ones are lost

    def local_agents(self, host: str) -> list[str]:
        """The agents `host` runs itself (its `list --json` rows of its own host)."""
        result = self[host].cli("list", "--json")
        assert result.returncode == 0, result.stderr
        return [r["name"] for r in json.loads(result.stdout) if r.get("host") == host]

    def running_agents(self, host: str) -> list[str]:
        """The agents `host` runs itself whose harness is up, by its own `list --json`."""
        result = self[host].cli("list", "--json")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        return [r["name"] for r in rows if r.get("host") == host and r["state"] == "running"]

    def settled(self, total: int) -> None:
        """Every host sees the others' agents: `total` agents in the hive, the manager too."""
        for host in self.by_host:
            elsewhere = total - len(self.local_agents(host))
            self.wait_until(
                host,
                f"{elsewhere} agents elsewhere",
                lambda s, n=elsewhere: s.elsewhere == n,  # type: ignore[misc]
            )

    def close(self) -> None:
        for hive in self.by_host.values():
            hive.close()
        shutil.rmtree(self.root, ignore_errors=True)


def with_ada_and_bea(hosts: Hosts) -> None:
    """Start `hosts` (a and b among them), linked, with agent ada on a and bea on b."""
    hosts.start()
    hosts.linked()
    hosts.spawn_idle("a", "ada")
    hosts.spawn_idle("b", "bea")
    hosts.settled(3)


def kept_out(hosts: Hosts, host: str) -> None:
    """`host`'s link stays down, and `hosts` says the server refused its login."""
    hosts.wait_until(host, "NATS down", lambda s: s.link == "down")
    info = json.loads(hosts[host].cli("hosts", "--json").stdout)["hosts"][0]
    assert "Authorization" in (info["link_error"] or ""), info


def deployed(hosts: Hosts, host: str, agent: str) -> str:
    """The config commit `agent` runs on `host` (its `applied/main`)."""
    return git(hosts[host].state_dir / "agents" / agent / "applied", "rev-parse", "main")


def change(proposed: Path, line: str) -> str:
    """Commit `line` added to `agent.toml` in the working copy `proposed`; the commit."""
    toml = proposed / "agent.toml"
    toml.write_text(toml.read_text() + line)
    git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", line.strip())
    return git(proposed, "rev-parse", "HEAD")


async def login_holds(hosts: Hosts, stranger: Hosts, body: str) -> None:
    """Hosts a and b of `hosts` join and carry `body` from ada to bea, and the one host of
    `stranger`, x, is refused its login; both are closed at the end."""
    try:
        with_ada_and_bea(hosts)
        async with HiveClient(hosts["a"].agent_sock("ada")) as ada:
            await ada.call(rq.Send(cmd="send", to="bea", body=body), rs.Sent)
        async with HiveClient(hosts["b"].agent_sock("bea")) as bea:
            got = await bea.call(rq.Recv(cmd="recv", wait_seconds=20), rs.Messages)
        assert [(m.sender, m.body) for m in got.messages] == [("ada", body)]
        stranger.start()
        kept_out(stranger, "x")
    finally:
        stranger.close()
        hosts.close()


@contextmanager
def hosts_of(
    cluster: NatsCluster,
    names: Sequence[str] = HOSTS,
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[Hosts]:
    """Started hive-cores for `names` (with `extra` settings by host), all linked; stopped
    and removed on exit."""
    more = extra or {}
    hosts = Hosts(cluster, {h: {**host_env(cluster, h), **more.get(h, {})} for h in names})
    try:
        hosts.start()
        hosts.linked()
        yield hosts
    finally:
        hosts.close()
