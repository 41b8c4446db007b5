"""An agent's harness log, from wherever its backend keeps it (`harness.log` on the
`local` backend, the container's journal on the nixos backend): a bounded tail, and what
was appended since an offset (the dashboard's log pane, `harness_log`, `logs --raw`)."""

from __future__ import annotations

from hive_core.containers.backend import AgentSpec
from hive_core.containers.logfile import CHUNK, LINES_MAX, Tail, lines_of
from hive_core.errors import UnknownAgent
from hive_core.services import Services
from hive_core.specs import spec_for

__all__ = ["CHUNK", "LINES_MAX", "Tail", "lines_of", "read_from", "tail"]


def _spec(s: Services, name: str) -> AgentSpec:
    record = s.registry.find(name)
    if record is None:
        raise UnknownAgent(f"no agent named {name!r}")
    return spec_for(s, record)


async def tail(s: Services, name: str, lines: int) -> Tail:
    """The last `lines` lines. Raises: UnknownAgent, NotFound, BackendError."""
    return await s.backend.log_tail(_spec(s, name), lines)


async def read_from(s: Services, name: str, offset: int) -> tuple[bytes, int]:
    """What was appended past `offset` (at most CHUNK; a line may come in pieces) and the
    new offset. Raises: UnknownAgent, BackendError."""
    return await s.backend.log_read(_spec(s, name), offset)
