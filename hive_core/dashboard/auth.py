"""Dashboard credentials: single-use login codes exchanged for signed session tokens
(hive_share/sessions.py says how a page keeps and sends them).

Codes come from `hive-core login-link` (or the start-up banner, on a terminal), live in
memory and expire after ten minutes. A session is `v1.<expires>.<nonce>.<mac>`, signed
with a key kept in `<state>/dashboard.key` (0600), so an open page survives a daemon
restart; it expires after SESSION_TTL. Deleting the key file logs every browser out at
the next start.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from hive_core.errors import StartupError
from hive_share.sessions import CODE_TTL, SESSION_TTL, Credentials

__all__ = ["CODE_TTL", "KEY_FILE", "SESSION_TTL", "Credentials", "load_key", "send_token"]

KEY_FILE = "dashboard.key"
"""The signing key's file in the state dir."""
KEY_BYTES = 32


def load_key(path: Path) -> bytes:
    """The session signing key at `path`, created (0600) on first use.

    Raises:
        StartupError: it is not a regular file of KEY_BYTES bytes (a symlink, say).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fd = -1  # made at an earlier start: it is read below
    if fd >= 0:
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
        finally:
            os.close(fd)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror}; remove it") from None
    try:
        st = os.fstat(fd)
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode) or len(key) != KEY_BYTES:
        raise StartupError(f"{path} is not a {KEY_BYTES}-byte key file; remove it")
    return key


def send_token(state_dir: Path, agent: str) -> str:
    """A token that lets `agent`'s page send the operator's messages to it through the
    dashboard (and nothing else), signed with the dashboard's key.

    Raises:
        StartupError: the key file is not a key (see load_key).
    """
    return Credentials(load_key(state_dir / KEY_FILE)).send_token(agent)
