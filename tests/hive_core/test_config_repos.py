from __future__ import annotations

from pathlib import Path

import pytest

from hive_core import agent_dirs, config_repos, git
from hive_core.git import Repo
from tests.git import git as _git


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "agents"
    path.mkdir(parents=True)
    return path


async def test_a_new_agent_gets_the_template_committed_on_applied_main(agents_dir: Path) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")

    applied = agent / "applied"
    assert _git(applied, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert _git(applied, "log", "--format=%s") == "initial config of alice"
    tracked = _git(applied, "ls-files").splitlines()
    assert sorted(tracked) == sorted(config_repos.template_files())
    assert (applied / "agent.toml").read_bytes() == config_repos.template_files()["agent.toml"]
    assert _git(applied, "status", "--porcelain") == ""


async def test_proposed_is_a_clone_of_applied_with_applied_as_its_remote(
    agents_dir: Path,
) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")

    proposed = agent / "proposed"
    assert _git(proposed, "rev-parse", "main") == _git(agent / "applied", "rev-parse", "main")
    assert _git(proposed, "remote") == "applied"
    assert Path(_git(proposed, "remote", "get-url", "applied")) == agent / "applied"
    assert (proposed.stat().st_mode & 0o777) == 0o700


async def test_seeding_again_keeps_the_history_of_both_repos(agents_dir: Path) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")
    proposed = agent / "proposed"
    (proposed / "agent.toml").write_text('model = "opus"\n')
    _git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "opus")
    before = (_git(agent / "applied", "rev-parse", "main"), _git(proposed, "rev-parse", "main"))

    sha, seeded = await config_repos.seed(agents_dir, "alice")

    assert not seeded
    assert sha == before[0]
    assert (_git(agent / "applied", "rev-parse", "main"), _git(proposed, "rev-parse", "main")) == (
        before
    )


async def test_empty_repos_of_an_older_install_are_seeded(agents_dir: Path) -> None:
    for sub in ("applied", "proposed"):
        (agents_dir / "bob" / sub).mkdir(parents=True)
        _git(agents_dir / "bob" / sub, "init", "-q")

    sha, seeded = await config_repos.seed(agents_dir, "bob")

    assert seeded
    assert _git(agents_dir / "bob" / "proposed", "rev-parse", "main") == sha


async def test_git_never_runs_what_a_hostile_repo_configures(
    agents_dir: Path, tmp_path: Path
) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")
    proposed = agent / "proposed"
    canary = tmp_path / "canary"
    script = proposed / ".git" / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {canary}\n")
    script.chmod(0o755)
    for hook in ("post-checkout", "pre-commit", "post-commit", "reference-transaction"):
        hook_path = proposed / ".git" / "hooks" / hook
        hook_path.write_text(f"#!/bin/sh\ntouch {canary}\n")
        hook_path.chmod(0o755)
    for key, value in (
        ("core.fsmonitor", str(script)),
        ("diff.external", str(script)),
        ("diff.evil.textconv", str(script)),
        ("core.pager", str(script)),
        ("core.hooksPath", str(proposed / ".git" / "hooks")),
    ):
        _git(proposed, "config", key, value)
    (proposed / ".gitattributes").write_text("* diff=evil\n")

    repo = Repo.at(proposed)
    await git.run(repo, "status", "--porcelain", cwd=agents_dir)
    await git.run(repo, "diff", "HEAD", cwd=agents_dir)
    await git.run(repo, "add", "--all", cwd=agents_dir)
    await git.run(repo, "commit", "-qm", "x", cwd=agents_dir)
    await git.run(repo, "log", "-p", "-1", cwd=agents_dir)
    await config_repos.seed(agents_dir, "alice")

    assert not canary.exists()


async def test_a_stale_index_lock_in_applied_is_cleared_but_proposed_is_left_alone(
    agents_dir: Path,
) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")
    for sub in ("applied", "proposed"):
        (agent / sub / ".git" / "index.lock").write_text("")
    assert config_repos.clear_stale_locks(agents_dir, ["alice", "bob"]) == ["alice"]
    assert not (agent / "applied" / ".git" / "index.lock").exists()
    assert (agent / "proposed" / ".git" / "index.lock").exists()
    (agent / "applied" / "agent.toml").write_text("model = 'x'\n")
    await git.run(Repo.at(agent / "applied"), "add", "--all", cwd=agents_dir)  # git works again
