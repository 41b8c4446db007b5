"""Per-agent web ports: a hash of the name into a fixed range, probed on a collision."""

from __future__ import annotations

import errno
import hashlib
import socket
from collections.abc import Collection

PORT_BASE = 42000
PORT_RANGE = 1000


def hashed_port(name: str) -> int:
    """The first choice for agent `name`: same name, same port, on every host."""
    digest = hashlib.sha256(name.encode("ascii")).digest()
    return PORT_BASE + int.from_bytes(digest[:4], "big") % PORT_RANGE


def agent_web_port(name: str, taken: Collection[int] = ()) -> int | None:
    """The hashed port of `name`, or when another agent holds it the next free one
    upwards (wrapping within the range); None when every port is taken.

    Deterministic for the same set of `taken` ports; the registry keeps the result,
    so an agent keeps its port even after the agent that pushed it aside is gone.
    """
    first = hashed_port(name) - PORT_BASE
    for step in range(PORT_RANGE):
        port = PORT_BASE + (first + step) % PORT_RANGE
        if port not in taken:
            return port
    return None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on `host:port` now (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True
