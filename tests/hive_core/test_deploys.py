"""A deploy whose agent does not come up is rolled back (the fake backend fails its start)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hive_core import actions, agent_dirs, config_repos
from hive_core.errors import BackendError
from hive_core.git import Repo
from hive_share import helper
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.test_crash_watch import Hive, _populate, hive

__all__ = ["hive"]  # the fixture, shared with the crash watch's tests


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


async def test_a_deploy_that_does_not_come_up_is_rolled_back_and_both_are_told(
    hive: Hive,
) -> None:
    agents_dir = hive.s.settings.agents_dir
    await agent_dirs.prepare(agents_dir, "bob")
    await _populate(hive)
    initial = await config_repos.head(Repo.at(agents_dir / "bob" / "applied"), agents_dir)
    assert initial is not None
    await hive.s.registry.set_deployed("bob", initial)
    proposed = agents_dir / "bob" / "proposed"
    (proposed / "agent.toml").write_text('model = "claude-broken"\n')
    _git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "broken")
    sha = _git(proposed, "rev-parse", "HEAD")
    approval = await actions.request_apply_commit(hive.s, "bob", sha, MANAGER_NAME)
    starts = len(hive.fake.starts)

    hive.fake.fail_next_start = True
    with pytest.raises(BackendError, match="rolled back") as info:
        await actions.approve(hive.s, approval.id, OPERATOR)

    assert "did not come up" in info.value.message
    applied = agents_dir / "bob" / "applied"
    assert _git(applied, "rev-parse", "main") == initial
    assert (applied / "agent.toml").read_text() != 'model = "claude-broken"\n'
    tags = _git(applied, "tag", "--list").split()
    assert f"failed/{approval.id}" in tags and f"deployed/{approval.id}" not in tags
    note = _git(applied, "tag", "--list", "--format=%(contents)", f"failed/{approval.id}")
    assert note.startswith("did not come up")
    record = hive.s.registry.get("bob")
    assert record.deployed_commit == initial
    assert hive.fake.status("bob").running  # back on its old config
    assert len(hive.fake.starts) == starts + 2
    assert (await hive.s.approvals.get(approval.id)).status == "failed"
    for who in (MANAGER_NAME, OPERATOR):
        got = await hive.s.broker.recv(who, owner=7, wait_seconds=0, limit=10)
        resolved = [m.event for m in got if isinstance(m.event, helper.ApprovalResolved)]
        assert [e.status for e in resolved] == ["failed"], who
