"""Dashboard credentials: single-use login codes exchanged for signed session cookies.

Codes come from `hive-core login-link` (or the start-up banner, on a terminal), live in
memory and expire after ten minutes. A session is `v1.<expires>.<nonce>.<mac>`, signed
with a key kept in `<state>/dashboard.key` (0600), so an open page survives a daemon
restart; it expires after SESSION_TTL. Deleting the key file logs every browser out at
the next start.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

from hive_core.errors import StartupError

CODE_TTL = 600.0
SESSION_TTL = 30 * 24 * 3600
"""Seconds a session cookie stays valid."""
SESSION_COOKIE = "hive_session"
KEY_BYTES = 32


def load_key(path: Path) -> bytes:
    """The session signing key at `path`, created (0600) on first use.

    Raises:
        StartupError: it is not a regular file of KEY_BYTES bytes (a symlink, say).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
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


class Credentials:
    def __init__(self, key: bytes, now: Callable[[], float] = time.time) -> None:
        """`now` is the wall clock sessions expire by."""
        self._key = key
        self._now = now
        self._codes: dict[str, float] = {}

    def new_code(self) -> str:
        """A fresh single-use login code."""
        now = time.monotonic()
        self._codes = {c: exp for c, exp in self._codes.items() if exp > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + CODE_TTL
        return code

    def redeem(self, code: str) -> str | None:
        """Trade a valid, unused code for a new session token; None if it is not one."""
        now = time.monotonic()
        for known, expires in list(self._codes.items()):
            if hmac.compare_digest(known, code):
                del self._codes[known]
                if expires <= now:
                    return None
                return self._sign(f"v1.{int(self._now() + SESSION_TTL)}.{secrets.token_hex(16)}")
        return None

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()
        return f"{payload}.{mac}"

    def valid_session(self, token: str | None) -> bool:
        if not token or len(token) > 200:
            return False
        payload, _, mac = token.rpartition(".")
        expected = self._sign(payload).rpartition(".")[2]
        if not hmac.compare_digest(mac, expected):
            return False
        parts = payload.split(".")
        return len(parts) == 3 and parts[1].isdigit() and int(parts[1]) > self._now()
