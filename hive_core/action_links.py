"""One-tap action links in notifications: signed, single-use, expiring tokens, each bound to
one action on one attention item.

A token is `<payload>.<signature>`, both base64url: the payload is JSON naming the action
(`approve`, `deny`, `answer`, `cancel`), the item's key, what the action takes (an approval
or question id, an option, an agent), when it expires and a random nonce; the signature is
HMAC-SHA256 of the payload with `<state>/notify.key` (0600, made on first use). A link opens
a confirm page on the dashboard; only the page's POST acts, once: the nonce is recorded in
`action_links_used` by a compare-and-set insert before the action runs, so a second use is
refused even when both race.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Literal

from hive_core.clock import Clock
from hive_core.db import Database

Action = Literal["approve", "deny", "answer", "cancel"]
ACTIONS: frozenset[str] = frozenset({"approve", "deny", "answer", "cancel"})
TOKEN_MAX = 1000


class BadLink(Exception):
    """The link is not one hive-core made, has expired, or was used; the message says which."""


@dataclass(frozen=True)
class Link:
    action: Action
    key: str
    """The attention item's key it was made for (`approval:7`, `question:3`, …)."""
    ref: str
    """What the action takes: an approval or question id, `id:option` for an answer, an
    agent for a cancel."""
    expires: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ActionLinks:
    def __init__(self, key: bytes, db: Database, clock: Clock, hours: float) -> None:
        self._key = key
        self._db = db
        self._clock = clock
        self._seconds = hours * 3600

    def mint(self, action: Action, key: str, ref: str) -> str:
        payload = json.dumps(
            {"a": action, "k": key, "r": ref, "e": self._clock.now() + self._seconds,
             "n": secrets.token_urlsafe(12)},
            separators=(",", ":"),
        ).encode()  # fmt: skip
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def read(self, token: str) -> Link:
        """The link `token` stands for, checked: signed by this hive, not expired.

        Raises:
            BadLink: anything else.
        """
        if len(token) > TOKEN_MAX or token.count(".") != 1:
            raise BadLink("this is not a hyperhive action link")
        body, signature = token.split(".")
        try:
            payload, given = _unb64(body), _unb64(signature)
        except (binascii.Error, ValueError):
            raise BadLink("this is not a hyperhive action link") from None
        if not hmac.compare_digest(given, self._sign(payload)):
            raise BadLink("this link was not made by this hive, or was changed")
        try:
            data = json.loads(payload)
            link = Link(data["a"], data["k"], data["r"], float(data["e"]), data["n"])
        except (ValueError, KeyError, TypeError):
            raise BadLink("this is not a hyperhive action link") from None
        if link.action not in ACTIONS:
            raise BadLink("this link names no action hive-core knows")
        if link.expires <= self._clock.now():
            raise BadLink("this link has expired; act from the dashboard or the CLI")
        return link

    async def used(self, link: Link) -> bool:
        """Whether `link` was used already."""

        def look(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM action_links_used WHERE nonce = ?", (link.nonce,)
            ).fetchone()
            return row is not None

        return await self._db.read(look)

    async def use(self, link: Link) -> None:
        """Record `link` as used, once.

        Raises:
            BadLink: it was used already (by this request's twin, say).
        """
        now = self._clock.now()

        def claim(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "INSERT INTO action_links_used (nonce, used_at, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
                (link.nonce, now, link.expires),
            ).fetchone()
            return row is not None

        if not await self._db.write(claim, one_statement=True):
            raise BadLink("this link was used already; each link works once")

    async def prune(self) -> None:
        """Forget used links that have expired anyway (they are refused for that)."""
        now = self._clock.now()
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM action_links_used WHERE expires < ?", (now,)),
            one_statement=True,
        )

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()
