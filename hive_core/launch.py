"""Bringing one harness up: on a web port no other program holds (an agent whose port
another program took moves for good to the next free one), then waiting for it to report
itself alive; when it does not, the error quotes its log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import anyio

from hive_core.containers.backend import AgentSpec
from hive_core.errors import BackendError, NotFound, PortCollision, ShuttingDown
from hive_core.ports import port_free
from hive_core.registry import AgentRecord
from hive_core.services import Services
from hive_core.specs import spec_for

logger = logging.getLogger(__name__)

ALIVE_TIMEOUT = 30.0
"""How long a started harness has to report itself alive."""


async def launch(s: Services, record: AgentRecord) -> AgentRecord:
    """Start the harness (on a web port no other program holds) and wait for it to report
    itself alive; the record it started with.

    Raises:
        ShuttingDown: hive-core is stopping; nothing was started.
        BackendError: it exited or stayed silent (the message quotes its log), or every
            web port of the range is taken.
    """
    if s.stopping:
        raise ShuttingDown(f"hive-core is stopping; {record.name} was not started")
    record = await own_port(s, record)
    spec = spec_for(s, record)
    status = await s.backend.start(spec)
    assert status.pid is not None
    outcome = await s.liveness.wait_alive(record.name, status.pid, ALIVE_TIMEOUT)
    if outcome == "alive":
        return record
    tail = await _log_tail(s, spec)
    if outcome == "timeout":
        await s.backend.kill(record.name)
        raise BackendError(
            f"{record.name} did not report itself alive within {ALIVE_TIMEOUT:.0f}s; "
            f"it was killed. Log tail: {tail}"
        )
    raise BackendError(f"{record.name} exited during start-up. Log tail: {tail}")


async def own_port(s: Services, record: AgentRecord) -> AgentRecord:
    """The agent's current record; when another program holds its web port (its harness is
    not running, so it is not the holder), first moved for good to the next free one.

    Raises: BackendError (every web port of the range is taken).
    """
    record = s.registry.get(record.name)
    name, held = record.name, record.web_port
    if s.backend.status(name).running or await anyio.to_thread.run_sync(web_port_free(s), held):
        return record
    try:
        record = await s.registry.move_port(name, web_port_free(s))
    except PortCollision as exc:
        raise BackendError(f"another program holds web port {held} of {name}, and "
                           f"{exc.message}") from None  # fmt: skip
    logger.warning("another program holds web port %d of %s; it moves to port %d for good",
                   held, name, record.web_port)  # fmt: skip
    return record


def web_port_free(s: Services) -> Callable[[int], bool]:
    """A probe of a web port where agent pages listen (where the dashboard does)."""
    return functools.partial(port_free, host=s.settings.dashboard_host)


async def _log_tail(s: Services, spec: AgentSpec, max_chars: int = 600) -> str:
    try:
        got = await s.backend.log_tail(spec, 20)
    except (NotFound, BackendError) as exc:
        return f"(log unreadable: {exc.message})"
    return "\n".join(got.lines).strip()[-max_chars:] or "(empty)"
