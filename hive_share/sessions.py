"""Browser sessions of the web pages, built so that no credential ever travels to another
port of the same host.

Browsers send a host's cookies to every port of it, and an agent may listen on a port of
its own; so neither page uses cookies. A single-use login code (from `hive-core
login-link`) is traded by the page's script for a signed session token
(`v1.<expiry>.<nonce>.<mac>`, HMAC-SHA256 over the rest), which the script keeps in its
origin's own storage (an origin includes its port) and sends as `Authorization: Bearer`.
An event stream (an EventSource sends no headers) opens with a one-use ticket that the
script fetches with its token just before.

An agent's page sends the operator's messages to that agent through the dashboard with a
send token (`s1.<agent>.<expiry>.<nonce>.<mac>`): it opens that one route for that one
agent and nothing else. The dashboard signs with a key kept in the state dir; each
agent's page with a key of its own. Standard library only."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping

CODE_TTL = 600.0
SESSION_TTL = 30 * 24 * 3600
"""Seconds a session token stays valid."""
TICKET_TTL = 30.0
"""Seconds a stream ticket stays valid: the script opens its stream right after."""
MAX_TICKETS = 256
"""Tickets outstanding at once; the oldest goes first."""
MAX_TOKEN = 200
SESSION_KIND = "v1"
SEND_KIND = "s1"


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one. `headers`
    must look names up case-insensitively."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


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
                return self._signed(SESSION_KIND)
        return None

    def send_token(self, agent: str) -> str:
        """A token that opens only the route sending the operator's message to `agent`."""
        return self._signed(SEND_KIND, agent)

    def valid_session(self, token: str | None) -> bool:
        return self._fields(token, SESSION_KIND) == []

    def valid_send(self, token: str | None, agent: str) -> bool:
        """Whether `token` is a session, or a send token for `agent`."""
        return self.valid_session(token) or self._fields(token, SEND_KIND) == [agent]

    def _signed(self, kind: str, *fields: str) -> str:
        expiry = str(int(self._now() + SESSION_TTL))
        payload = ".".join([kind, *fields, expiry, secrets.token_hex(16)])
        return f"{payload}.{self._mac(payload)}"

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def _fields(self, token: str | None, kind: str) -> list[str] | None:
        """The fields between kind and expiry of a well-signed, unexpired token of `kind`;
        None for anything else."""
        if not token or len(token) > MAX_TOKEN:
            return None
        payload, _, mac = token.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        parts = payload.split(".")
        if len(parts) < 3 or parts[0] != kind or not parts[-2].isdigit():
            return None
        return parts[1:-2] if int(parts[-2]) > self._now() else None


class Tickets:
    """One-use tickets that open one event stream each, within TICKET_TTL."""

    def __init__(self) -> None:
        self._issued: dict[str, float] = {}

    def issue(self) -> str:
        now = time.monotonic()
        self._issued = {t: exp for t, exp in self._issued.items() if exp > now}
        while len(self._issued) >= MAX_TICKETS:
            del self._issued[next(iter(self._issued))]  # the oldest: dicts keep order
        ticket = secrets.token_urlsafe(24)
        self._issued[ticket] = now + TICKET_TTL
        return ticket

    def take(self, ticket: str | None) -> bool:
        """Whether `ticket` was issued, unused and unexpired; it is used up either way."""
        if not ticket or len(ticket) > MAX_TOKEN:
            return False
        expires = self._issued.pop(ticket, None)
        return expires is not None and expires > time.monotonic()
