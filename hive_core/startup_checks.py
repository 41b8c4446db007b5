"""What `hive-core serve` makes sure of before it opens anything: a run dir that is ours
and private, and the state dir's `hive.lock` held with our pid, once no git a previous
hive-core ran can still write there.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from pathlib import Path

import anyio

from hive_core import git
from hive_core.errors import StartupError

logger = logging.getLogger(__name__)

LOCK_WAIT = git.GIT_TIMEOUT + 5.0
"""How long start-up waits for what a previous hive-core left holding `hive.lock` (a git
it ran, which dies with it but may not be gone yet) before it gives up."""


def prepare_private_dir(path: Path) -> None:
    """Create the socket dir, or accept an existing one only if it is ours and private.

    Raises:
        StartupError: someone else owns it, or others may write to it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise StartupError(f"{path} belongs to uid {st.st_uid}, not to us; remove it")
    if st.st_mode & 0o022:
        raise StartupError(
            f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            "chmod 700 it or remove it"
        )


async def lock_state_dir(state_dir: Path, wait: float = LOCK_WAIT) -> int:
    """Hold an exclusive lock on the state dir for the daemon's life, with our pid in it.

    The lock is passed to every git hive-core runs, so it is free only once no git of a
    previous hive-core can still write: what start-up reconciles then stays as it is.

    Raises:
        StartupError: another hive-core uses this state dir, or what held the lock did not
            let go within `wait` seconds.
    """
    path = state_dir / "hive.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = anyio.current_time() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _lock_holder(fd)
            if holder is not None and _is_hive_core(holder):
                os.close(fd)
                raise StartupError(
                    f"another hive-core (pid {holder}) is already using {state_dir} "
                    "(it holds hive.lock)"
                ) from None
            if anyio.current_time() >= deadline:
                os.close(fd)
                raise StartupError(
                    f"another hive-core is already using {state_dir}, or a process of a "
                    f"previous one (pid {holder or '?'}) still holds hive.lock after "
                    f"{wait:.0f}s; `fuser -v {path}` names it"
                ) from None
            if not told:
                logger.warning("waiting for what a previous hive-core left running to let "
                               "go of %s", path)  # fmt: skip
                told = True
            await anyio.sleep(0.05)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _lock_holder(fd: int) -> int | None:
    """The pid the daemon that took the lock wrote into it."""
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None


def _is_hive_core(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"hive_core" in cmdline or b"hive-core" in cmdline
