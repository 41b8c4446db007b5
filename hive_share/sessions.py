"""Browser sessions of the web pages: single-use login codes traded for signed session
cookies (`v1.<expiry>.<nonce>.<mac>`, HMAC-SHA256 over the rest). The dashboard signs with a
key kept in the state dir; each agent's page with a key of its own. Standard library only."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

CODE_TTL = 600.0
SESSION_TTL = 30 * 24 * 3600
"""Seconds a session cookie stays valid."""


class Credentials:
    def __init__(self, key: bytes, now: Callable[[], float] = time.time) -> None:
        """`now` is the wall clock sessions expire by."""
        self._key = key
        self._now = now
        self._codes: dict[str, float] = {}

    def new_code(self) -> str:
        """A fresh single-use login code."""
        code = secrets.token_urlsafe(24)
        self.add_code(code)
        return code

    def add_code(self, code: str) -> None:
        """Accept `code` once within CODE_TTL (a code minted elsewhere: hive-core mints an
        agent page's codes and hands them to its harness)."""
        now = time.monotonic()
        self._codes = {c: exp for c, exp in self._codes.items() if exp > now}
        self._codes[code] = now + CODE_TTL

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
