"""Per-agent directories on the host: creation, tombstone listing, fd-relative purge.

Every function takes a name already checked by `validate_agent_name` and
never follows a symlink inside `<state>/agents/`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from pathlib import Path

import anyio

from hive_core import config_repos
from hive_core.errors import BackendError, NotFound
from hive_share.names import InvalidName, validate_agent_name

logger = logging.getLogger(__name__)

SUBDIRS = ("applied", "proposed", "state")


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _ensure_dirs(agents_dir: Path, name: str) -> None:
    """Create `<name>/{applied,proposed,state}` where missing."""
    validate_agent_name(name)
    agents_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = _open_dir(agents_dir)
    try:
        # A tombstone being revived keeps its state.
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=root)
        agent = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root
        )
        try:
            for sub in SUBDIRS:
                try:
                    os.mkdir(sub, 0o700, dir_fd=agent)
                except FileExistsError:
                    st = os.lstat(sub, dir_fd=agent)
                    if not stat.S_ISDIR(st.st_mode):
                        raise BackendError(
                            f"{agents_dir / name / sub} exists and is not a directory"
                        ) from None
        finally:
            os.close(agent)
    except NotADirectoryError:
        raise BackendError(f"{agents_dir / name} exists and is not a directory") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: a symlink where the agent dir should be
            raise BackendError(f"{agents_dir / name} is a symlink; refusing to use it") from None
        raise
    finally:
        os.close(root)


async def create_dirs(agents_dir: Path, name: str) -> None:
    """Create the agent's dirs where missing. Raises: BackendError."""
    await anyio.to_thread.run_sync(_ensure_dirs, agents_dir, name)


async def prepare(agents_dir: Path, name: str) -> Path:
    """Create (or reuse) the agent's dirs and seed its config repos.

    Raises:
        BackendError: a path is not a directory, or git failed.
    """
    await create_dirs(agents_dir, name)
    await config_repos.seed(agents_dir, name)
    return agents_dir / name


PREPARED = ".prepared"
"""Marks the dir of an agent whose config was prepared (`request_init_config`) and which has
not been spawned since: `list` shows it as `prepared`, not as a tombstone."""


def mark_prepared(agents_dir: Path, name: str) -> None:
    validate_agent_name(name)
    fd = os.open(agents_dir / name / PREPARED,
                 os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)  # fmt: skip
    os.close(fd)


def clear_prepared(agents_dir: Path, name: str) -> None:
    validate_agent_name(name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(agents_dir / name / PREPARED)


def is_prepared(agents_dir: Path, name: str) -> bool:
    return os.path.lexists(agents_dir / name / PREPARED)


def list_dirs(agents_dir: Path) -> list[str]:
    """Names of the valid agent dirs under `agents_dir` (real directories only)."""
    try:
        entries = list(os.scandir(agents_dir))
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        try:
            validate_agent_name(entry.name)
        except InvalidName:
            logger.warning("ignoring %s: not a valid agent name", ascii(entry.name))
            continue
        if entry.is_dir(follow_symlinks=False):
            names.append(entry.name)
    return sorted(names)


def _purge(agents_dir: Path, name: str) -> None:
    validate_agent_name(name)
    root = _open_dir(agents_dir)
    try:
        try:
            st = os.lstat(name, dir_fd=root)
        except FileNotFoundError:
            raise NotFound(f"no tombstone named {name!r}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise BackendError(f"{agents_dir / name} is not a directory; refusing to purge it")
        # rmtree with dir_fd works fd-relative and never follows symlinks inside the tree.
        shutil.rmtree(name, dir_fd=root)
    finally:
        os.close(root)


async def purge(agents_dir: Path, name: str) -> None:
    """Remove a tombstone. Raises: NotFound, BackendError."""
    await anyio.to_thread.run_sync(_purge, agents_dir, name)
