"""The manager prepares an agent's config repos before asking to spawn it."""

from __future__ import annotations

import json
from pathlib import Path

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import RemoteError
from tests.e2e.hive import Hive
from tests.git import git as _git


async def test_the_manager_seeds_the_config_of_an_agent_that_does_not_exist_yet(
    hive: Hive,
) -> None:
    async with hive.client(hive.manager_sock) as manager:
        got = await manager.call(
            rq.RequestInitConfig(cmd="request_init_config", name="bob"), rs.ConfigRepos
        )
        again = await manager.call(
            rq.RequestInitConfig(cmd="request_init_config", name="bob"), rs.ConfigRepos
        )
        me = await manager.call(rq.Whoami(cmd="whoami"), rs.Identity)
    bob = hive.state_dir / "agents" / "bob"
    assert got.seeded and not again.seeded
    assert Path(got.proposed) == bob / "proposed"
    assert got.applied_commit == _git(bob / "applied", "rev-parse", "main")
    assert _git(bob / "proposed", "rev-parse", "applied/main") == got.applied_commit
    assert me.config_root is not None and Path(me.config_root) / "bob" == bob
    listed = {a["name"]: a["state"] for a in json.loads(hive.cli("list", "--json").stdout)}
    assert listed["bob"] == "prepared"  # a dir with no agent, not a tombstone
    assert "prepared" in hive.cli("list").stdout

    (bob / "proposed" / "agent.toml").write_text('model = "claude-prepared"\n')
    _git(bob / "proposed", "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "m")
    assert hive.cli("spawn", "bob").returncode == 0
    assert _git(bob / "applied", "rev-parse", "main") == got.applied_commit  # not deployed
    assert hive.cli("destroy", "bob").returncode == 0
    listed = {a["name"]: a["state"] for a in json.loads(hive.cli("list", "--json").stdout)}
    assert listed["bob"] == "tombstone"  # spawned once: its dir is a tombstone now


async def test_only_the_manager_may_seed_config_repos(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    for path in (hive.agent_sock("alice"), hive.host_sock):
        async with hive.client(path) as client:
            try:
                await client.call(
                    rq.RequestInitConfig(cmd="request_init_config", name="bob"), rs.ConfigRepos
                )
            except RemoteError as exc:
                assert exc.code == "verb_not_allowed"
            else:
                raise AssertionError(f"request_init_config was accepted on {path.name}")
    async with hive.client(hive.agent_sock("alice")) as alice:
        assert (await alice.call(rq.Whoami(cmd="whoami"), rs.Identity)).config_root is None
    assert not (hive.state_dir / "agents" / "bob").exists()
