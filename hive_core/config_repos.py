"""The per-agent config repos: `applied/`, core-owned and seeded from the template with
a first commit on `main`, and `proposed/`, the manager's working copy: a clone of
`applied` with `applied` as its remote.

Every git command goes through `hive_core.git` (hardened, never inside a repo).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from importlib.resources import files
from pathlib import Path

import anyio

from hive_core import git
from hive_core.git import Repo
from hive_share.names import validate_agent_name

logger = logging.getLogger(__name__)

MAIN = "refs/heads/main"
REMOTE = "applied"
"""The name of the remote in `proposed/` that points at `applied/`."""


def template_files() -> dict[str, bytes]:
    """The template's files by name, as shipped in the package."""
    root = files("hive_core.templates") / "agent"
    return {entry.name: entry.read_bytes() for entry in root.iterdir() if entry.is_file()}


async def head(repo: Repo, cwd: Path) -> str | None:
    """The commit `main` points at, or None when the repo has no commits (or no repo)."""
    if not repo.git_dir.is_dir():
        return None
    code, out = await git.run(
        repo, "rev-parse", "--verify", "--quiet", f"{MAIN}^{{commit}}", cwd=cwd, check=False
    )
    return out.decode().strip() if code == 0 else None


NEUTRAL_ATTRIBUTES = (
    b"# written by hive-core: the attributes a commit's own .gitattributes could set\n"
    b"# (export-ignore, ident, eol, -diff, working-tree-encoding, ...) do not apply here\n"
    b"* !text !eol !ident !filter !working-tree-encoding !export-ignore !export-subst "
    b"!diff !merge\n"
)
"""`applied/.git/info/attributes`: it outranks every `.gitattributes` in the tree, so the
files checked out and the diff the operator reviews are the commit's blobs as they are."""


def neutralize_attributes(repo: Repo) -> None:
    """Write `NEUTRAL_ATTRIBUTES` into a core-owned repo, unless it is there already."""
    info = repo.git_dir / "info"
    info.mkdir(mode=0o700, exist_ok=True)
    path = info / "attributes"
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == NEUTRAL_ATTRIBUTES:
            return
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
        f.write(NEUTRAL_ATTRIBUTES)


def _write_template(work_tree: Path) -> None:
    for name, data in template_files().items():
        fd = os.open(
            work_tree / name,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        with os.fdopen(fd, "wb") as f:
            f.write(data)


async def _seed_applied(applied: Repo, name: str, cwd: Path) -> str:
    assert applied.work_tree is not None
    if not applied.git_dir.is_dir():
        await git.run(None, "init", "--quiet", "--initial-branch=main", "--",
                      str(applied.work_tree), cwd=cwd)  # fmt: skip
    # An older install's empty repo may have another initial branch.
    await git.run(applied, "symbolic-ref", "HEAD", MAIN, cwd=cwd)
    await anyio.to_thread.run_sync(_write_template, applied.work_tree)
    await git.run(applied, "add", "--all", cwd=cwd)
    await git.run(applied, "commit", "--quiet", "--no-verify", "-m",
                  f"initial config of {name}", cwd=cwd)  # fmt: skip
    sha = await head(applied, cwd)
    assert sha is not None, f"{applied.git_dir} has no main after its first commit"
    return sha


def _clear(agent_dir: Path, sub: str) -> None:
    """Remove `agent_dir/sub` fd-relative, never following a link inside it."""
    fd = os.open(agent_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(sub, dir_fd=fd)
    finally:
        os.close(fd)


async def clone_proposed(agent_dir: Path, cwd: Path) -> None:
    """Make `agent_dir/proposed` afresh: a clone of `agent_dir/applied` with it as the
    remote `applied`."""
    await anyio.to_thread.run_sync(_clear, agent_dir, "proposed")
    await git.run(None, "clone", "--quiet", "--no-hardlinks", f"--origin={REMOTE}",
                  "--branch=main", "--", str(agent_dir / "applied"),
                  str(agent_dir / "proposed"), cwd=cwd)  # fmt: skip
    os.chmod(agent_dir / "proposed", 0o700)


def clear_stale_locks(agents_dir: Path, names: list[str]) -> list[str]:
    """Remove `applied/.git/index.lock` of each agent: hive-core owns those repos and runs
    no git at start-up, so a lock there was left by a git killed with a previous daemon.
    Returns the agents whose lock was removed. `proposed/` is the manager's: not touched."""
    cleared = []
    for name in names:
        lock = agents_dir / name / "applied" / ".git" / "index.lock"
        try:
            lock.unlink()
        except FileNotFoundError:
            continue
        logger.warning("removed a stale %s left by an interrupted git", lock)
        cleared.append(name)
    return cleared


async def seed(agents_dir: Path, name: str) -> tuple[str, bool]:
    """Make sure `name`'s `applied/` has a first commit and `proposed/` is a clone of it.

    Existing history is kept: an `applied/` with commits is left alone, and so is a
    `proposed/` with commits. Returns `applied/main`'s commit and whether anything
    was seeded.

    Raises:
        GitError: git failed.
    """
    validate_agent_name(name)
    agent_dir = agents_dir / name
    applied = Repo.at(agent_dir / "applied")
    seeded = False
    sha = await head(applied, agents_dir)
    if sha is None:
        sha = await _seed_applied(applied, name, agents_dir)
        seeded = True
        logger.info("seeded the config of %s at %s", name, sha[:12])
    if await head(Repo.at(agent_dir / "proposed"), agents_dir) is None:
        await clone_proposed(agent_dir, agents_dir)
        seeded = True
    return sha, seeded
