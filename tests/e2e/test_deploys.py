"""Config as code over the sockets: propose a commit, approve or deny it, deploy or abort."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import RemoteError
from hive_share.models import Approval, Message
from tests.e2e.hive import Hive
from tests.git import git as _git

EXTRA_SERVER = Path(__file__).resolve().parents[1] / "extra_mcp_server.py"


def _commit(hive: Hive, agent: str, toml: str, message: str = "change") -> str:
    proposed = hive.state_dir / "agents" / agent / "proposed"
    (proposed / "agent.toml").write_text(toml)
    _git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", message)
    return _git(proposed, "rev-parse", "HEAD")


def _applied(hive: Hive, agent: str) -> Path:
    return hive.state_dir / "agents" / agent / "applied"


def _tags(hive: Hive, agent: str) -> dict[str, str]:
    out = _git(
        _applied(hive, agent),
        "tag",
        "--list",
        "--format=%(refname:short) "
        "%(if)%(*objectname)%(then)%(*objectname)%(else)%(objectname)%(end)",
    )
    return dict(line.split(" ", 1) for line in out.splitlines())


def _annotation(hive: Hive, agent: str, tag: str) -> str:
    return _git(_applied(hive, agent), "tag", "--list", "--format=%(contents)", tag)


async def _propose(hive: Hive, agent: str, commit: str) -> Approval:
    async with hive.client(hive.manager_sock) as manager:
        got = await manager.call(
            rq.RequestApplyCommit(cmd="request_apply_commit", agent=agent, commit=commit),
            rs.ApprovalResult,
        )
    return got.approval


async def _manager_inbox(hive: Hive) -> list[Message]:
    async with hive.client(hive.manager_sock) as manager:
        got = await manager.call(rq.Recv(cmd="recv", wait_seconds=5), rs.Messages)
        if got.messages:
            await manager.call(rq.Ack(cmd="ack", ids=[m.id for m in got.messages]), rs.Acked)
    return list(got.messages)


def _listed(hive: Hive, agent: str) -> dict[str, object]:
    rows = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    row: dict[str, object] = rows[agent]
    return row


@pytest.fixture
def bob(hive: Hive) -> Hive:
    assert hive.cli("stop", "hm1nd").returncode == 0  # the tests read the manager's inbox
    assert hive.cli("spawn", "bob").returncode == 0
    return hive


async def test_an_approved_commit_is_deployed_tagged_and_run(bob: Hive) -> None:
    hive = bob
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    assert _listed(hive, "bob")["deployed_commit"] == initial
    pid = _listed(hive, "bob")["pid"]
    sha = _commit(hive, "bob", 'model = "claude-deployed-1"\n')

    approval = await _propose(hive, "bob", sha)
    assert approval.kind == "apply_commit" and approval.commit == sha
    assert approval.diff is not None and '+model = "claude-deployed-1"' in approval.diff
    pending = json.loads(hive.cli("pending", "--json").stdout)
    assert [(p["commit"], p["diff"]) for p in pending] == [(sha, approval.diff)]
    table = hive.cli("pending").stdout
    assert "apply_commit" in table and f"({sha[:12]})" in table and "+1 -" in table
    shown = hive.cli("show", str(approval.id))
    assert shown.returncode == 0 and '+model = "claude-deployed-1"' in shown.stdout
    assert _tags(hive, "bob") == {f"proposal/{approval.id}": sha}
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial  # nothing moved yet

    done = hive.cli("approve", str(approval.id))
    assert done.returncode == 0, done.stderr
    assert "restarted" in done.stdout
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == sha
    assert (_applied(hive, "bob") / "agent.toml").read_text() == 'model = "claude-deployed-1"\n'
    assert _tags(hive, "bob") == {f"proposal/{approval.id}": sha, f"deployed/{approval.id}": sha}
    row = _listed(hive, "bob")
    assert row["deployed_commit"] == sha and row["pid"] != pid and row["state"] == "running"
    assert sha[:12] in hive.cli("list").stdout
    (told,) = await _manager_inbox(hive)
    assert isinstance(told.event, helper.ApprovalResolved)
    assert told.event.status == "approved" and "deployed" in (told.event.reason or "")


async def test_a_denied_commit_is_tagged_with_the_reason_and_moves_nothing(bob: Hive) -> None:
    hive = bob
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    sha = _commit(hive, "bob", 'model = "claude-denied"\n')
    approval = await _propose(hive, "bob", sha)
    assert hive.cli("deny", str(approval.id), "--reason", "not that model").returncode == 0
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
    assert _tags(hive, "bob")[f"denied/{approval.id}"] == sha
    assert _annotation(hive, "bob", f"denied/{approval.id}") == "not that model"
    (told,) = await _manager_inbox(hive)
    assert isinstance(told.event, helper.ApprovalResolved)
    assert (told.event.status, told.event.reason) == ("denied", "not that model")


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ("model = [\n", "agent.toml at"),
        ('[mcp_servers.x]\ncommand = "/nonexistent/mcp-server"\n', "mcp_servers.x"),
    ],
)
async def test_a_failing_prepare_tags_failed_and_keeps_the_agent_as_it_was(
    bob: Hive, toml: str, error: str
) -> None:
    hive = bob
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    pid = _listed(hive, "bob")["pid"]
    sha = _commit(hive, "bob", toml)
    approval = await _propose(hive, "bob", sha)
    failed = hive.cli("approve", str(approval.id))
    assert failed.returncode == 1 and error in failed.stderr
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
    assert _tags(hive, "bob")[f"failed/{approval.id}"] == sha
    assert error in _annotation(hive, "bob", f"failed/{approval.id}")
    row = _listed(hive, "bob")
    assert (row["pid"], row["deployed_commit"]) == (pid, initial)
    (told,) = await _manager_inbox(hive)
    assert isinstance(told.event, helper.ApprovalResolved) and told.event.status == "failed"
    async with hive.client() as host:
        inbox = await host.call(rq.Inbox(cmd="inbox"), rs.Messages)
    assert any(
        isinstance(m.event, helper.ApprovalResolved) and m.event.id == approval.id
        for m in inbox.messages
    )


async def test_a_commit_that_is_missing_unrelated_or_empty_is_refused(bob: Hive) -> None:
    hive = bob
    proposed = hive.state_dir / "agents" / "bob" / "proposed"
    cases = {"0123456789ab" * 3 + "0123": "is not in bob's proposed repo"}
    empty = _git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-q",
                 "--allow-empty", "-m", "nothing")  # fmt: skip
    del empty
    cases[_git(proposed, "rev-parse", "HEAD")] = "changes nothing"
    _git(proposed, "checkout", "-q", "--orphan", "other")
    (proposed / "agent.toml").write_text('model = "x"\n')
    _git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "unrelated")
    cases[_git(proposed, "rev-parse", "HEAD")] = "does not build on the deployed commit"
    for commit, message in cases.items():
        with pytest.raises(RemoteError) as info:
            await _propose(hive, "bob", commit)
        assert info.value.code == "invalid_request" and message in info.value.message
    assert json.loads(hive.cli("pending", "--json").stdout) == []


async def test_a_hostile_proposed_repo_runs_nothing_through_any_core_operation(
    bob: Hive, tmp_path: Path
) -> None:
    hive = bob
    proposed = hive.state_dir / "agents" / "bob" / "proposed"
    canary = tmp_path / "canary"
    script = proposed / ".git" / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {canary}\ncat\n")
    script.chmod(0o755)
    for hook in ("post-checkout", "pre-commit", "post-commit", "reference-transaction",
                 "pre-upload-pack", "post-merge"):  # fmt: skip
        path = proposed / ".git" / "hooks" / hook
        path.write_text(f"#!/bin/sh\ntouch {canary}\n")
        path.chmod(0o755)
    (proposed / ".gitattributes").write_text("* diff=evil filter=evil\n")
    sha = _commit(hive, "bob", 'model = "claude-hostile"\n')  # hooks not yet armed: by design
    for key, value in (
        ("core.fsmonitor", str(script)),
        ("diff.external", str(script)),
        ("diff.evil.textconv", str(script)),
        ("filter.evil.smudge", str(script)),
        ("filter.evil.clean", str(script)),
        ("core.hooksPath", str(proposed / ".git" / "hooks")),
        ("uploadpack.packObjectsHook", str(script)),
    ):
        _git(proposed, "config", key, value)
    canary.unlink(missing_ok=True)

    approval = await _propose(hive, "bob", sha)
    assert hive.cli("show", str(approval.id)).returncode == 0
    assert hive.cli("approve", str(approval.id)).returncode == 0
    other = _commit(hive, "bob", 'model = "claude-hostile-2"\n')
    canary.unlink(missing_ok=True)  # the test's own commit ran the hooks
    second = await _propose(hive, "bob", other)
    assert hive.cli("deny", str(second.id)).returncode == 0
    assert hive.cli("rebuild", "bob").returncode == 0

    assert not canary.exists()


async def test_update_rebuilds_the_agents_on_other_code_once_approved(bob: Hive) -> None:
    hive = bob
    refused = hive.cli("update")
    assert refused.returncode == 1 and "nothing to update" in refused.stderr
    pid = _listed(hive, "bob")["pid"]
    async with hive.client(hive.agent_sock("bob")) as agent:  # a harness on older code
        await agent.call(rq.Alive(cmd="alive", pid=int(str(pid)), version="0.0.1"), rs.Done)
    async with hive.client(hive.manager_sock) as manager:
        queued = await manager.call(rq.Update(cmd="update"), rs.ApprovalResult)
    assert (queued.approval.kind, queued.approval.agent) == ("update", "all")
    done = hive.cli("approve", str(queued.approval.id))
    assert done.returncode == 0, done.stderr
    assert "rebuilt bob" in done.stdout
    assert _listed(hive, "bob")["pid"] != pid
    assert "nothing to update" in hive.cli("update").stderr  # the new harness is current


async def test_a_config_whose_mcp_server_never_answers_is_rolled_back(bob: Hive) -> None:
    hive = bob
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    sha = _commit(hive, "bob", '[mcp_servers.mute]\ncommand = "true"\n')  # runs, says nothing
    approval = await _propose(hive, "bob", sha)
    failed = hive.cli("approve", str(approval.id))
    assert failed.returncode == 1
    assert "rolled back" in failed.stderr and "mcp server mute did not" in failed.stderr
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
    assert (_applied(hive, "bob") / "agent.toml").read_text() != "[mcp_servers.mute]\n"
    tags = _tags(hive, "bob")
    assert tags[f"failed/{approval.id}"] == sha and f"deployed/{approval.id}" not in tags
    note = _annotation(hive, "bob", f"failed/{approval.id}")
    assert note.startswith("did not come up") and f"rolled back to {initial}" in note
    row = _listed(hive, "bob")
    assert (row["state"], row["deployed_commit"]) == ("running", initial)
    (told,) = await _manager_inbox(hive)
    assert isinstance(told.event, helper.ApprovalResolved) and told.event.status == "failed"
    assert "mcp server mute" in (told.event.reason or "")


async def test_a_config_whose_mcp_server_answers_deploys_and_names_the_model(bob: Hive) -> None:
    hive = bob
    server = EXTRA_SERVER
    sha = _commit(
        hive, "bob",
        f'model = "claude-with-tools"\n[mcp_servers.extra]\ncommand = "{sys.executable}"\n'
        f'args = ["{server}"]\n',
    )  # fmt: skip
    approval = await _propose(hive, "bob", sha)
    done = hive.cli("approve", str(approval.id))
    assert done.returncode == 0, done.stderr
    assert "restarted it (model claude-with-tools)" in done.stdout
    assert _listed(hive, "bob")["deployed_commit"] == sha
