"""A deploy whose agent does not come up is rolled back (the fake backend fails its start)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from hive_core import agent_dirs, approval_flow, deploys, lifecycle, recovery
from hive_core.dashboard import views
from hive_core.errors import BackendError
from hive_share import agent_config, helper
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.git import git as _git
from tests.hive_core.test_crash_watch import Hive, _populate, hive

__all__ = ["hive"]  # the fixture, shared with the crash watch's tests


async def test_a_deploy_that_does_not_come_up_is_rolled_back_and_both_are_told(
    hive: Hive,
) -> None:
    applied, initial, _, approval_id = await _proposal(hive)
    starts = len(hive.fake.starts)

    hive.fake.fail_next_start = True
    with pytest.raises(BackendError, match="rolled back") as info:
        await approval_flow.approve(hive.s, approval_id, OPERATOR)

    assert "did not come up" in info.value.message
    assert _git(applied, "rev-parse", "main") == initial
    assert (applied / "agent.toml").read_text() != 'model = "claude-next"\n'
    tags = _git(applied, "tag", "--list").split()
    assert f"failed/{approval_id}" in tags and f"deployed/{approval_id}" not in tags
    note = _git(applied, "tag", "--list", "--format=%(contents)", f"failed/{approval_id}")
    assert note.startswith("did not come up")
    record = hive.s.registry.get("bob")
    assert record.deployed_commit == initial
    assert hive.fake.status("bob").running  # back on its old config
    assert len(hive.fake.starts) == starts + 2
    assert (await hive.s.approvals.get(approval_id)).status == "failed"
    for who in (MANAGER_NAME, OPERATOR):
        got = await hive.s.broker.recv(who, owner=7, wait_seconds=0, limit=10)
        resolved = [m.event for m in got if isinstance(m.event, helper.ApprovalResolved)]
        assert [e.status for e in resolved] == ["failed"], who


async def _proposal(hive: Hive) -> tuple[Path, str, str, int]:
    """bob with a pending proposal; (applied, initial commit, proposed commit, approval id)."""
    agents_dir = hive.s.settings.agents_dir
    await agent_dirs.prepare(agents_dir, "bob")
    await _populate(hive)
    applied = agents_dir / "bob" / "applied"
    initial = _git(applied, "rev-parse", "main")
    await hive.s.registry.set_deployed("bob", initial)
    proposed = agents_dir / "bob" / "proposed"
    (proposed / "agent.toml").write_text('model = "claude-next"\n')
    _git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "next")
    sha = _git(proposed, "rev-parse", "HEAD")
    approval = await approval_flow.request_apply_commit(hive.s, "bob", sha, MANAGER_NAME)
    return applied, initial, sha, approval.id


@pytest.mark.parametrize("moved_main", [False, True])
async def test_a_deploy_killed_after_its_deployed_tag_is_finished_and_verified_at_start(
    hive: Hive, moved_main: bool
) -> None:
    applied, initial, sha, approval_id = await _proposal(hive)
    note = f"approval {approval_id}\n\ndeployed over {initial}"
    _git(applied, "tag", "-a", "-m", note, f"deployed/{approval_id}", sha)
    if moved_main:  # killed between moving main and recording it
        _git(applied, "reset", "-q", "--hard", sha)

    done = await deploys.reconcile(hive.s)

    assert [(u.approval.id, u.previous) for u in done.unverified] == [(approval_id, initial)]
    assert (await hive.s.approvals.get(approval_id)).status == "pending"  # until verified
    assert _git(applied, "rev-parse", "main") == sha
    assert (applied / "agent.toml").read_text() == 'model = "claude-next"\n'
    assert hive.s.registry.get("bob").deployed_commit == sha
    await recovery.finish_interrupted(hive.s, done)  # bob runs: it came up
    approval = await hive.s.approvals.get(approval_id)
    assert approval.status == "approved" and "after a restart" in (approval.reason or "")
    got = await hive.s.broker.recv(MANAGER_NAME, owner=7, wait_seconds=0, limit=10)
    assert [m.event.status for m in got if isinstance(m.event, helper.ApprovalResolved)] == [
        "approved"
    ]


async def test_a_deploy_killed_before_its_agent_came_up_is_rolled_back_at_start(
    hive: Hive,
) -> None:
    applied, initial, sha, approval_id = await _proposal(hive)
    note = f"approval {approval_id}\n\ndeployed over {initial}"
    _git(applied, "tag", "-a", "-m", note, f"deployed/{approval_id}", sha)
    done = await deploys.reconcile(hive.s)
    hive.fake.crash("bob", 1)  # the restore could not bring it up on the new config

    await recovery.finish_interrupted(hive.s, done)

    approval = await hive.s.approvals.get(approval_id)
    assert approval.status == "failed" and "did not come up after a restart" in (
        approval.reason or ""
    )
    assert _git(applied, "rev-parse", "main") == initial
    assert hive.s.registry.get("bob").deployed_commit == initial
    assert _git(applied, "tag", "--list", f"deployed/{approval_id}") == ""
    assert hive.fake.status("bob").running  # back on its old config


@pytest.mark.parametrize(("end", "status"), [("failed", "failed"), ("denied", "denied")])
async def test_a_proposal_killed_after_its_end_tag_gets_that_end_at_start(
    hive: Hive, end: str, status: str
) -> None:
    applied, initial, sha, approval_id = await _proposal(hive)
    _git(applied, "tag", "-a", "-m", "the note", f"{end}/{approval_id}", sha)

    await deploys.reconcile(hive.s)

    approval = await hive.s.approvals.get(approval_id)
    assert (approval.status, approval.reason) == (status, "the note")
    assert _git(applied, "rev-parse", "main") == initial
    assert hive.s.registry.get("bob").deployed_commit == initial


async def test_a_proposal_killed_before_any_end_stays_pending_and_can_still_be_deployed(
    hive: Hive,
) -> None:
    applied, initial, sha, approval_id = await _proposal(hive)
    _git(applied, "tag", "-d", f"proposal/{approval_id}")  # killed before the tag

    await deploys.reconcile(hive.s)

    assert (await hive.s.approvals.get(approval_id)).status == "pending"
    assert _git(applied, "rev-parse", "main") == initial
    assert "deployed" in await approval_flow.approve(hive.s, approval_id, OPERATOR)
    assert _git(applied, "rev-parse", "main") == sha


async def test_rebuild_puts_applied_back_at_the_deployed_commit(hive: Hive) -> None:
    applied, initial, _, _ = await _proposal(hive)
    (applied / "agent.toml").write_text("drifted = true\n")
    (applied / "stray.txt").write_text("left behind\n")

    assert await lifecycle.rebuild(hive.s, "bob", OPERATOR) == "rebuilt bob"

    assert _git(applied, "status", "--porcelain") == ""
    assert _git(applied, "rev-parse", "main") == initial
    assert not (applied / "stray.txt").exists()


async def test_a_roll_back_killed_half_way_is_finished_at_start(hive: Hive) -> None:
    applied, initial, sha, approval_id = await _proposal(hive)
    _git(applied, "tag", "-a", "-m", f"approval {approval_id}", f"deployed/{approval_id}", sha)
    _git(applied, "reset", "-q", "--hard", sha)
    await hive.s.registry.set_deployed("bob", sha)
    note = f"did not come up: it exited\n\nrolled back to {initial}"
    _git(applied, "tag", "-a", "-m", note, f"failed/{approval_id}", sha)  # then killed

    await deploys.reconcile(hive.s)

    approval = await hive.s.approvals.get(approval_id)
    assert (approval.status, approval.reason) == ("failed", "did not come up: it exited")
    assert _git(applied, "rev-parse", "main") == initial
    assert hive.s.registry.get("bob").deployed_commit == initial
    assert _git(applied, "tag", "--list", "deployed/*") == ""


async def test_an_approval_a_restart_interrupted_before_any_tag_is_pending_again(
    hive: Hive,
) -> None:
    applied, initial, sha, approval_id = await _proposal(hive)
    await hive.s.approvals.claim(approval_id)  # approved, then hive-core died

    await deploys.reconcile(hive.s)

    assert (await hive.s.approvals.get(approval_id)).status == "pending"
    assert _git(applied, "rev-parse", "main") == initial
    assert "deployed" in await approval_flow.approve(hive.s, approval_id, OPERATOR)
    assert _git(applied, "rev-parse", "main") == sha


async def test_an_interrupted_spawn_is_approved_when_its_agent_exists_else_pending(
    hive: Hive,
) -> None:
    await _populate(hive)
    made = await hive.s.approvals.add("spawn", "bob", MANAGER_NAME)  # bob exists
    lost = await hive.s.approvals.add("spawn", "carol", MANAGER_NAME)
    update = await hive.s.approvals.add("update", approval_flow.UPDATE_TARGET, MANAGER_NAME)
    for approval in (made, lost, update):
        await hive.s.approvals.claim(approval.id)

    done = await deploys.reconcile(hive.s)

    assert [a.id for a in done.resolved] == [made.id]
    statuses = [(await hive.s.approvals.get(a.id)).status for a in (made, lost, update)]
    assert statuses == ["approved", "pending", "pending"]


async def _fetched(hive: Hive, files: dict[str, bytes]) -> str:
    """A commit on bob's deployed one with `files`, fetched into `applied/` past propose."""
    agents_dir = hive.s.settings.agents_dir
    proposed, applied = agents_dir / "bob" / "proposed", agents_dir / "bob" / "applied"
    for name, data in files.items():
        (proposed / name).write_bytes(data)
    _git(proposed, "add", "--all")
    _git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qm", "past")
    sha = _git(proposed, "rev-parse", "HEAD")
    _git(applied, "fetch", "-q", str(proposed), sha)
    return sha


async def test_prepare_checks_sizes_itself_whatever_propose_let_through(hive: Hive) -> None:
    applied, initial, _, pending = await _proposal(hive)
    await approval_flow.deny(hive.s, pending, "not this one", OPERATOR)
    sha = await _fetched(hive, {"big.bin": b"\0" * (deploys.MAX_FILE + 1)})
    approval = await hive.s.approvals.add("apply_commit", "bob", MANAGER_NAME, commit=sha,
                                          diff="(queued past propose)")  # fmt: skip

    with pytest.raises(BackendError, match=r"'big\.bin' in commit .* is 1\.0 MiB"):
        await approval_flow.approve(hive.s, approval.id, OPERATOR)

    got = await hive.s.approvals.get(approval.id)
    assert got.status == "failed" and "a config file may hold at most" in (got.reason or "")
    assert _git(applied, "rev-list", "-n1", f"failed/{approval.id}") == sha
    assert _git(applied, "rev-parse", "main") == initial


async def test_a_defect_in_prepare_still_ends_the_approval_failed_and_tells(
    hive: Hive, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied, initial, sha, approval_id = await _proposal(hive)

    def broken(text: str, where: str) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr(agent_config, "parse", broken)
    with pytest.raises(BackendError, match="RuntimeError: a defect"):
        await approval_flow.approve(hive.s, approval_id, OPERATOR)

    got = await hive.s.approvals.get(approval_id)
    assert got.status == "failed" and "RuntimeError: a defect" in (got.reason or "")
    assert _git(applied, "rev-list", "-n1", f"failed/{approval_id}") == sha
    assert _git(applied, "rev-parse", "main") == initial
    told = await hive.s.broker.recv(MANAGER_NAME, owner=7, wait_seconds=0, limit=10)
    assert [m.event.status for m in told if isinstance(m.event, helper.ApprovalResolved)] == [
        "failed"
    ]


async def test_a_tag_that_exists_is_never_moved(hive: Hive) -> None:
    applied, initial, _, approval_id = await _proposal(hive)
    _git(applied, "tag", "-a", "-m", "older", f"deployed/{approval_id}", initial)

    with pytest.raises(BackendError, match="already exists"):
        await approval_flow.approve(hive.s, approval_id, OPERATOR)

    assert _git(applied, "rev-list", "-n1", f"deployed/{approval_id}") == initial
    assert _git(applied, "rev-parse", "main") == initial
    assert (await hive.s.approvals.get(approval_id)).status == "failed"


async def test_the_config_view_reads_a_big_file_only_up_to_its_cut(hive: Hive) -> None:
    await _populate(hive)
    await agent_dirs.prepare(hive.s.settings.agents_dir, "bob")
    sha = await _fetched(hive, {"big.txt": b"0123456789abcde\n" * (3 * 1024 * 1024 // 16)})
    await hive.s.registry.set_deployed("bob", sha)

    tracemalloc.start()
    try:
        got = await views.deployed_config(hive.s, "bob")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    text = got["files"]["big.txt"]
    assert text.endswith("\n… (cut)") and len(text) <= deploys.CONFIG_FILE_MAX + 10
    assert peak < 2 * 1024 * 1024
