"""Per-agent web ports: a pure hash of the name into a fixed range."""

from __future__ import annotations

import hashlib

PORT_BASE = 42000
PORT_RANGE = 1000


def agent_web_port(name: str) -> int:
    """The web port of agent `name`: same name, same port, on every host and restart."""
    digest = hashlib.sha256(name.encode("ascii")).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_RANGE
