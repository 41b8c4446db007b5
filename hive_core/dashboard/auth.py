"""Dashboard credentials: single-use login codes exchanged for session cookies.

Codes come from `hive-core login-link` (or the start-up banner, on a terminal) and expire
after ten minutes; sessions live in memory and end when the daemon restarts.
"""

from __future__ import annotations

import hmac
import secrets
import time

CODE_TTL = 600.0
SESSION_COOKIE = "hive_session"


class Credentials:
    def __init__(self) -> None:
        self._codes: dict[str, float] = {}
        self._sessions: set[str] = set()

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
                session = secrets.token_urlsafe(32)
                self._sessions.add(session)
                return session
        return None

    def valid_session(self, token: str | None) -> bool:
        if not token:
            return False
        return any(hmac.compare_digest(s, token) for s in self._sessions)
