"""The container backend interface every implementation honours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
from anyio.abc import TaskStatus

from hive_core.containers.logfile import Tail
from hive_share.models import Role


@dataclass(frozen=True)
class AgentSpec:
    """Everything a backend needs to run one agent's harness."""

    name: str
    role: Role
    agent_dir: Path
    """`<state>/agents/<name>`: holds applied/, proposed/, state/ and the harness log."""
    socket: Path
    """The agent's socket in hive-core (`agent.sock`, or `manager.sock` for the manager)."""
    harness_socket: Path
    """Where the harness listens for hive-core's pings."""
    web_port: int
    operator_pronouns: str
    dashboard_url: str | None = None
    web_host: str = "127.0.0.1"
    """Where the agent's page listens: where the dashboard does."""
    web_allowed_hosts: tuple[str, ...] = ()
    """Host names the page answers to besides loopback: the dashboard's."""

    @property
    def state_dir(self) -> Path:
        return self.agent_dir / "state"

    @property
    def log_path(self) -> Path:
        return self.agent_dir / "harness.log"


@dataclass(frozen=True)
class ContainerStatus:
    running: bool
    pid: int | None = None
    started_at: float | None = None
    """Wall-clock start time, when known."""


class ContainerBackend(Protocol):
    """Runs agents' harnesses. Every method is safe to call for an agent that is not running."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Live in the daemon's task group until it is cancelled (`tg.start` runs it);
        `task_status.started()` once usable."""
        ...

    async def start(self, spec: AgentSpec) -> ContainerStatus:
        """Start the harness (no-op if running). Raises: BackendError."""
        ...

    async def stop(self, name: str) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after a bound)."""
        ...

    async def kill(self, name: str) -> None:
        """Stop at once (SIGKILL)."""
        ...

    def status(self, name: str) -> ContainerStatus: ...

    async def shutdown(self) -> None:
        """Stop every harness this backend started (daemon exit)."""
        ...

    async def destroy(self, name: str) -> None:
        """Stop the agent and remove its container (the agent is already unregistered).
        Raises: BackendError."""
        ...

    async def build(self, spec: AgentSpec, commit: str) -> None:
        """A deploy's build step, between prepare and finalize: build what `spec` would run
        on config `commit`, moving nothing. Raises: BackendError (the build failed)."""
        ...

    async def finalize(self, spec: AgentSpec) -> None:
        """A deploy's last step, after `applied/main` and the record moved to the new
        commit: make the container run it (the caller restarts it). Raises: BackendError."""
        ...

    async def log_tail(self, spec: AgentSpec, lines: int) -> Tail:
        """The last `lines` lines of the harness log. Raises: NotFound, BackendError."""
        ...

    async def log_read(self, spec: AgentSpec, offset: int) -> tuple[bytes, int]:
        """What the harness logged past `offset` (from `log_tail` or an earlier call), and
        the new offset. Raises: BackendError."""
        ...
