"""How many connections each socket may hold, sized from the process's descriptor limit.

Each socket has its own cap, and the agent sockets also draw from one shared
pool, so that the sum stays well under `RLIMIT_NOFILE` and one agent's flood
can cost neither `host.sock`, `manager.sock` nor another agent a connection.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FD_RESERVE = 256
"""Descriptors kept for everything that is not a socket connection: the database,
logs, subprocess pipes, the dashboard, the harness processes' supervision."""
HOST_CONNECTIONS = 256
MANAGER_CONNECTIONS = 64
AGENT_CONNECTIONS = 64
"""Per agent socket. A harness uses a handful: its inbox loop, tool calls, reports."""
NOFILE_CEILING = 1 << 20


@dataclass(frozen=True)
class ConnectionCaps:
    host: int
    manager: int
    agent: int
    agents_total: int
    """Connections over all agent sockets together."""

    @classmethod
    def for_limit(cls, nofile: int) -> ConnectionCaps:
        """Caps whose sum leaves at least half of what is left after the reserve free."""
        host = max(8, min(HOST_CONNECTIONS, nofile // 8))
        manager = max(8, min(MANAGER_CONNECTIONS, nofile // 16))
        spare = max(0, nofile - FD_RESERVE - host - manager)
        agent = max(8, min(AGENT_CONNECTIONS, spare // 4))
        return cls(host, manager, agent, max(agent, spare // 2))


class ConnectionPool:
    """Connections shared by many sockets, counted; `take` fails when none is left."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0

    def take(self) -> bool:
        if self.used >= self.size:
            return False
        self.used += 1
        return True

    def give_back(self) -> None:
        self.used -= 1


def raise_nofile_limit() -> int:
    """Raise the soft `RLIMIT_NOFILE` to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the descriptor limit from %d to %d: %s",
                           soft, target, exc)  # fmt: skip
            return soft
        logger.info("descriptor limit raised from %d to %d", soft, target)
        return target
    return soft if soft != resource.RLIM_INFINITY else NOFILE_CEILING
