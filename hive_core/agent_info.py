"""Each agent as the surfaces see it: its `list` row (`info`, `list_agents` with the
tombstones), the `ContainerStateChanged` the bus carries after a change (`publish_state`),
and whether its harness runs other code than hive-core (`runs_other_code`, `outdated`).
"""

from __future__ import annotations

import time

import anyio

from hive_core import agent_dirs, build_version
from hive_core.liveness import ping
from hive_core.registry import AgentRecord
from hive_core.services import Services
from hive_share import events
from hive_share.models import AgentInfo, AgentState


def info(s: Services, record: AgentRecord, alive: bool | None = None) -> AgentInfo:
    """One agent as `list` shows it; `alive` is a fresh ping's answer, else whether its
    harness reported itself alive."""
    status = s.backend.status(record.name)
    if alive is None:
        alive = status.running and s.liveness.is_alive(record.name, status.pid)
    uptime = None
    if status.running and status.started_at is not None:
        uptime = max(0.0, time.time() - status.started_at)
    return AgentInfo(
        name=record.name,
        role=record.role,
        state="running" if status.running else "stopped",
        pid=status.pid,
        uptime_seconds=uptime,
        web_port=record.web_port,
        alive=alive,
        status=s.liveness.status.get(record.name, ""),
        login=s.liveness.login.get(record.name, "unknown"),
        login_since=s.liveness.login_since.get(record.name),
        login_expires_at=s.liveness.login_expires.get(record.name),
        deployed_commit=record.deployed_commit,
        model=s.liveness.models.get(record.name),
        model_source=s.liveness.model_sources.get(record.name),
        turn_state=s.liveness.turn_state.get(record.name) if status.running else None,
        needs_update=runs_other_code(s, record.name),
        stuck=s.stuck.signals_of(record.name) if status.running else [],
        host=None if s.federation is None else s.settings.host_id,
    )


def publish_state(s: Services, name: str) -> None:
    """Tell the bus how `name` is now (nothing when it is not registered)."""
    record = s.registry.find(name)
    if record is not None:
        s.bus.publish(events.ContainerStateChanged(agent=info(s, record)))


def runs_other_code(s: Services, name: str) -> bool:
    """Whether `name`'s harness reported a build other than the one hive-core runs
    (`hive_share.build`: the release and a digest of the source)."""
    reported = s.liveness.versions.get(name)
    return reported is not None and reported != build_version()


def outdated(s: Services) -> list[str]:
    """Agents whose harness runs other code than hive-core."""
    return [r.name for r in s.registry.all() if runs_other_code(s, r.name)]


async def list_agents(s: Services, tombstones: bool) -> list[AgentInfo]:
    """Every agent with a fresh ping of its harness, then (optionally) the tombstones, then
    the other hosts' agents as the hive's directory last showed them."""
    records = s.registry.all()

    async def probe(record: AgentRecord) -> bool:
        if not s.backend.status(record.name).running:
            return False
        return await ping(s.settings.harness_socket(record.name))

    alive = [False] * len(records)

    async def probe_into(i: int) -> None:
        alive[i] = await probe(records[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(records)):
            tg.start_soon(probe_into, i)
    rows = [info(s, r, a) for r, a in zip(records, alive, strict=True)]
    if tombstones:
        known = {r.name for r in records}
        dirs = await anyio.to_thread.run_sync(agent_dirs.list_dirs, s.settings.agents_dir)
        agents_dir = s.settings.agents_dir
        for name in dirs:
            if name not in known:
                prepared = agent_dirs.is_prepared(agents_dir, name)
                state: AgentState = "prepared" if prepared else "tombstone"
                rows.append(AgentInfo(name=name, role="agent", state=state))
    if s.federation is not None:
        rows += s.federation.remote_agents()
    return rows
