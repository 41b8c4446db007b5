"""The daemon's services, wired once in `daemon.py` and handed to every surface.

This holder has no logic of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hive_core.approvals import Approvals
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.clock import Clock
from hive_core.containers.backend import ContainerBackend
from hive_core.db import Database
from hive_core.liveness import Liveness
from hive_core.questions import Questions
from hive_core.registry import Registry
from hive_core.reminders import Reminders
from hive_core.settings import Settings
from hive_core.sockets.agents import AgentSockets
from hive_core.transients import Transients
from hive_core.turn_slots import TurnSlots

if TYPE_CHECKING:
    from hive_core.action_links import ActionLinks
    from hive_core.attention import Attention
    from hive_core.deployed_config import DeployedConfigs
    from hive_core.federation.service import Federation
    from hive_core.notify import Notifications
    from hive_core.stuck import StuckWatch
    from hive_core.usage import Usage


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    bus: EventBus
    registry: Registry
    broker: Broker
    approvals: Approvals
    transients: Transients
    questions: Questions
    reminders: Reminders
    backend: ContainerBackend
    liveness: Liveness
    agent_sockets: AgentSockets
    configs: DeployedConfigs = field(init=False)
    """Each agent's deployed agent.toml (its stuck thresholds and budgets)."""
    stuck: StuckWatch = field(init=False)
    """Stuck signals: the harnesses' reports, ping-pong between agents, silent agents."""
    usage: Usage = field(init=False)
    """What turns cost, and the budgets on it."""
    links: ActionLinks = field(init=False)
    """The one-tap action links notifications carry."""
    notifier: Notifications = field(init=False)
    """The attention list, sent to the notification URLs."""
    on_unexpected_exit: Callable[[str], None] = lambda name: None
    """Set to the crash watch's nudge: a harness died without being asked to."""
    dashboard_url: str | None = None
    """The dashboard's address once it listens (the agent pages link back to it)."""
    login_link: Callable[[], str] | None = None
    """Mints a one-time dashboard login link, once the dashboard listens."""
    attention: Attention | None = None
    """The attention list, once the daemon made it (it needs the crash watch)."""
    federation: Federation | None = None
    """The hive's other hosts, over NATS; None on a hive of one host (no HIVE_NATS_URL)."""
    turn_slots: TurnSlots = field(init=False)
    """Turn admission: how many turns run, and start, at once across the hive."""
    stopping: bool = False
    """The daemon is shutting down: nothing is started or restarted any more."""
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    """One lock per agent name: lifecycle actions on one agent never interleave."""

    def __post_init__(self) -> None:
        self.turn_slots = TurnSlots(self.settings.turn_slots, self.settings.turn_starts)

    def lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())
