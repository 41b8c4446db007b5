from __future__ import annotations

from pathlib import Path

import pytest

from hive_core import agent_dirs
from hive_core.errors import BackendError, NotFound
from hive_share.names import InvalidName


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "agents"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the agents dir that must survive every purge."""
    path = tmp_path / "precious"
    path.mkdir()
    (path / "keep.txt").write_text("do not delete")
    return path


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for directories and symlinks)."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() and not p.is_symlink() else None
        for p in sorted(root.rglob("*"))
    }


async def test_prepare_creates_two_git_repos_and_a_state_dir(agents_dir: Path) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")

    assert agent == agents_dir / "alice"
    assert (agent / "applied" / ".git").is_dir()
    assert (agent / "proposed" / ".git").is_dir()
    assert (agent / "state").is_dir()
    assert not (agent / "state" / ".git").exists()
    assert (agent.stat().st_mode & 0o777) == 0o700


async def test_prepare_keeps_the_state_of_an_existing_agent(agents_dir: Path) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")
    (agent / "state" / "notes.md").write_text("remember")
    again = await agent_dirs.prepare(agents_dir, "alice")
    assert (again / "state" / "notes.md").read_text() == "remember"


async def test_prepare_refuses_a_symlink_in_place_of_the_agent_dir(
    agents_dir: Path, outside: Path
) -> None:
    (agents_dir / "alice").symlink_to(outside)
    before = _snapshot(outside)
    with pytest.raises(BackendError, match="alice"):
        await agent_dirs.prepare(agents_dir, "alice")
    assert _snapshot(outside) == before


async def test_prepare_refuses_an_invalid_name(agents_dir: Path) -> None:
    with pytest.raises(InvalidName):
        await agent_dirs.prepare(agents_dir, "../x")
    assert list(agents_dir.parent.iterdir()) == [agents_dir]


async def test_purge_removes_an_agent_dir(agents_dir: Path) -> None:
    await agent_dirs.prepare(agents_dir, "alice")
    await agent_dirs.prepare(agents_dir, "bob")
    await agent_dirs.purge(agents_dir, "alice")
    assert not (agents_dir / "alice").exists()
    assert (agents_dir / "bob" / "state").is_dir()


async def test_purge_of_a_missing_agent_is_not_found(agents_dir: Path) -> None:
    with pytest.raises(NotFound, match="alice"):
        await agent_dirs.purge(agents_dir, "alice")


async def test_purge_refuses_a_symlinked_agent_dir_and_leaves_its_target_alone(
    agents_dir: Path, outside: Path
) -> None:
    (agents_dir / "alice").symlink_to(outside, target_is_directory=True)
    before = _snapshot(outside)

    with pytest.raises(BackendError, match="not a directory"):
        await agent_dirs.purge(agents_dir, "alice")

    assert _snapshot(outside) == before
    assert (agents_dir / "alice").is_symlink()


async def test_purge_removes_symlinks_inside_the_tree_without_following_them(
    agents_dir: Path, outside: Path
) -> None:
    agent = await agent_dirs.prepare(agents_dir, "alice")
    (agent / "state" / "escape").symlink_to(outside, target_is_directory=True)
    (agent / "state" / "file-link").symlink_to(outside / "keep.txt")
    before = _snapshot(outside)

    await agent_dirs.purge(agents_dir, "alice")

    assert _snapshot(agents_dir) == {}
    assert _snapshot(outside) == before


@pytest.mark.parametrize("name", ["..", ".", "", "/", "../precious", "a/b", "Alice", "hive"])
async def test_purge_refuses_invalid_names_before_touching_anything(
    agents_dir: Path, tmp_path: Path, outside: Path, name: str
) -> None:
    await agent_dirs.prepare(agents_dir, "alice")
    before = _snapshot(tmp_path)

    with pytest.raises(InvalidName):
        await agent_dirs.purge(agents_dir, name)

    assert _snapshot(tmp_path) == before


async def test_purge_refuses_invalid_names_even_if_the_agents_dir_is_missing(
    tmp_path: Path,
) -> None:
    with pytest.raises(InvalidName):
        await agent_dirs.purge(tmp_path / "missing", "..")


async def test_list_dirs_returns_only_real_directories_with_valid_names(
    agents_dir: Path, outside: Path
) -> None:
    await agent_dirs.prepare(agents_dir, "bob")
    await agent_dirs.prepare(agents_dir, "alice")
    for bad in ["Bad", "a_b", "toolongname", "-x", "hive"]:
        (agents_dir / bad).mkdir()
    (agents_dir / "linked").symlink_to(outside, target_is_directory=True)
    (agents_dir / "afile").write_text("not a dir")

    assert agent_dirs.list_dirs(agents_dir) == ["alice", "bob"]


def test_list_dirs_of_a_missing_agents_dir_is_empty(tmp_path: Path) -> None:
    assert agent_dirs.list_dirs(tmp_path / "missing") == []
