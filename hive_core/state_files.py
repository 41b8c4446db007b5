"""Reading a file an agent names by its in-container path (`/state/...`), safely.

The path is resolved inside that agent's own state dir only, one component at
a time, fd-relative, never following a symlink: `..`, absolute host paths,
symlinks out of the dir and `/proc` tricks are all refused.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from hive_core.errors import InvalidRequest

MAX_PAYLOAD = 64 * 1024


def parse_state_path(path: str) -> tuple[str, ...]:
    """The components of `/state/<...>` below the state dir.

    Raises:
        InvalidRequest: not under /state, or with `.`, `..`, empty parts or NUL.
    """
    if "\x00" in path or not path.startswith("/state/"):
        raise InvalidRequest(f"file_path {path[:80]!r} must be a file under /state/")
    parts = path[len("/state/") :].split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest(f"file_path {path[:80]!r} must not contain '.', '..' or '//'")
    return tuple(parts)


def read_state_file(agents_dir: Path, agent: str, path: str) -> tuple[str | None, str]:
    """`(content, note)`: the file's text, or None with a note saying why there is none.

    Raises:
        InvalidRequest: the path itself is not acceptable (see `parse_state_path`).
    """
    parts = parse_state_path(path)
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fd = os.open(agents_dir, flags_dir)
        fds.append(fd)
        for component in (agent, "state", *parts[:-1]):
            fd = os.open(component, flags_dir, dir_fd=fd)
            fds.append(fd)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=fd)  # fmt: skip
        fds.append(fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{path} is not a regular file"
        if st.st_nlink > 1:
            # A hard link can point at any file the host can read (another agent's,
            # /etc's): only a file with no other name is the agent's own.
            return None, f"{path} has {st.st_nlink} hard links; only a file with one is attached"
        if st.st_size > MAX_PAYLOAD:
            return None, f"{path} is {st.st_size} bytes; at most {MAX_PAYLOAD} are attached"
        data = os.read(fd, MAX_PAYLOAD + 1)
    except FileNotFoundError:
        return None, f"{path} did not exist when the reminder fired"
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None, f"{path} goes through a symlink or a non-directory; not followed"
        return None, f"{path} could not be read: {exc.strerror}"
    finally:
        for open_fd in fds:
            os.close(open_fd)
    if len(data) > MAX_PAYLOAD:
        return None, f"{path} grew past {MAX_PAYLOAD} bytes while being read"
    return data.decode("utf-8", errors="replace"), f"{path}: {len(data)} bytes"
