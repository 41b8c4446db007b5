"""The lifecycle of one agent, the same for every surface (the admin socket, the manager
socket, the dashboard): spawn (and the manager's creation at start-up), init_config, start,
stop, kill, restart, rebuild, destroy; and `on_exit`, the backend's word that a harness
ended. Each holds the agent's lock and records its transition.
"""

from __future__ import annotations

import contextlib
import logging

import anyio

from hive_core import agent_dirs, config_repos, deploys, meta
from hive_core.agent_info import info, publish_state
from hive_core.containers.nixos import NixosBackend
from hive_core.errors import (
    AlreadyExists,
    BackendError,
    Conflict,
    InvalidRequest,
    NotFound,
    Unreachable,
)
from hive_core.launch import launch, web_port_free
from hive_core.meta import MetaAgent
from hive_core.services import Services
from hive_share import events
from hive_share import responses as rs
from hive_share.models import AgentInfo, Role
from hive_share.names import MANAGER_NAME

logger = logging.getLogger(__name__)


async def spawn(s: Services, name: str, actor: str) -> AgentInfo:
    """Create and start agent `name` (a revived tombstone keeps its state).

    Raises:
        AlreadyExists, PortCollision, BackendError.
    """
    async with s.lock(name):
        return await _create(s, name, "agent", actor)


async def ensure_manager(s: Services) -> None:
    """Create the manager agent if it does not exist yet. A hive that spans hosts has one
    manager, on the host that claimed its name first; while the hive's directory is out of
    reach nothing is created (the federation calls this again once it is up)."""
    async with s.lock(MANAGER_NAME):
        if s.registry.find(MANAGER_NAME) is not None:
            return
        try:
            await _create(s, MANAGER_NAME, "manager", "hive-core")
        except AlreadyExists as exc:
            if s.federation is None:
                raise
            logger.info("no manager here: %s", exc.message)
        except Unreachable as exc:
            logger.warning("the manager waits for the hive's directory: %s", exc.message)


async def _create(s: Services, name: str, role: Role, actor: str) -> AgentInfo:
    if s.registry.find(name) is not None:
        raise AlreadyExists(f"agent {name!r} already exists")
    port = s.registry.check_new(name)
    if s.federation is None:
        return await _create_here(s, name, role, actor, port)
    await s.federation.claim(name)  # the name across the hive, before anything is made
    try:
        return await _create_here(s, name, role, actor, port)
    finally:
        if s.registry.find(name) is None:  # nothing was registered: give the name back
            with anyio.CancelScope(shield=True):
                await s.federation.release(name)


async def _create_here(s: Services, name: str, role: Role, actor: str, port: int) -> AgentInfo:
    if isinstance(s.backend, NixosBackend):
        await _preflight(s, s.backend, MetaAgent(name, role, port, name, None))
    async with s.transients.recording(name, "spawn", actor):
        await agent_dirs.create_dirs(s.settings.agents_dir, name)
        deployed, _ = await config_repos.seed(s.settings.agents_dir, name)
        record = await s.registry.add(name, role, web_port_free(s))
        await anyio.to_thread.run_sync(agent_dirs.clear_prepared, s.settings.agents_dir, name)
        await s.registry.set_deployed(name, deployed)
        record = s.registry.get(name)
        if role != "manager":
            await s.agent_sockets.open(name)
        try:
            record = await launch(s, record)
        except BackendError as exc:
            remedy = f"`hive-core start {name}` retries"
            if role != "manager":
                remedy += f"; `hive-core destroy {name}` removes it"
            raise BackendError(
                f"{name} was created but did not start: {exc.message}. {remedy}"
            ) from None
        finally:
            publish_state(s, name)
    return info(s, record, alive=True)


async def _preflight(s: Services, backend: NixosBackend, agent: MetaAgent) -> None:
    """Before a container is made or rebuilt: the meta flake with it renders and parses.
    (A web port another program holds on the host, whose network containers share, is
    moved off when the container starts.)

    Raises: BackendError.
    """
    others = [a for a in meta.roster(s) if a.name != agent.name]
    await backend.preflight([*others, agent])


async def init_config(s: Services, name: str) -> rs.ConfigRepos:
    """Seed `name`'s config repos (idempotent); the agent need not exist yet.

    Raises:
        BackendError: a directory is in the way, or git failed.
    """
    async with s.lock(name):
        await agent_dirs.create_dirs(s.settings.agents_dir, name)
        sha, seeded = await config_repos.seed(s.settings.agents_dir, name)
        if s.registry.find(name) is None:
            await anyio.to_thread.run_sync(agent_dirs.mark_prepared, s.settings.agents_dir, name)
            prepared = AgentInfo(name=name, role="agent", state="prepared")
            s.bus.publish(events.ContainerStateChanged(agent=prepared))
    return rs.ConfigRepos(
        agent=name,
        proposed=str(s.settings.agents_dir / name / "proposed"),
        applied_commit=sha,
        seeded=seeded,
    )


async def start(s: Services, name: str, actor: str) -> str:
    async with s.lock(name):
        s.registry.get(name)
        if s.backend.status(name).running:
            return f"{name} is already running"
        async with s.transients.recording(name, "start", actor):
            await s.registry.set_desired(name, "running")
            try:
                await launch(s, s.registry.get(name))
            finally:
                publish_state(s, name)
        return f"started {name}"


async def _halt(s: Services, name: str, action: str, actor: str) -> str:
    async with s.lock(name):
        s.registry.get(name)
        if not s.backend.status(name).running:
            await s.registry.set_desired(name, "stopped")
            return f"{name} is not running"
        async with s.transients.recording(name, action, actor):
            await s.registry.set_desired(name, "stopped")
            if action == "kill":
                await s.backend.kill(name)
            else:
                await s.backend.stop(name)
            publish_state(s, name)
        return f"{'killed' if action == 'kill' else 'stopped'} {name}"


async def stop(s: Services, name: str, actor: str) -> str:
    return await _halt(s, name, "stop", actor)


async def kill(s: Services, name: str, actor: str) -> str:
    return await _halt(s, name, "kill", actor)


async def restart(s: Services, name: str, actor: str, action: str = "restart") -> str:
    async with s.lock(name):
        record = s.registry.get(name)
        if action == "rebuild" and isinstance(s.backend, NixosBackend):
            agent = MetaAgent(name, record.role, record.web_port, name, record.deployed_commit)
            await _preflight(s, s.backend, agent)
        async with s.transients.recording(name, action, actor):
            await s.backend.stop(name)
            if action == "rebuild" and record.deployed_commit is not None:
                await deploys.reset_to(s, name, record.deployed_commit)
            await s.registry.set_desired(name, "running")
            try:
                await launch(s, s.registry.get(name))
            finally:
                publish_state(s, name)
        return f"{'rebuilt' if action == 'rebuild' else 'restarted'} {name}"


async def rebuild(s: Services, name: str, actor: str) -> str:
    """Re-apply the agent's deployed config: `applied/` is put back exactly at the deployed
    commit (repairing any drift), then the agent restarts on it."""
    return await restart(s, name, actor, action="rebuild")


async def destroy(s: Services, name: str, purge: bool, actor: str) -> str:
    """Stop and forget an agent, leaving its dir as a tombstone (or removing it with purge).

    Raises:
        InvalidRequest: the manager cannot be destroyed.
        NotFound: no such agent or tombstone.
    """
    if name == MANAGER_NAME:
        raise InvalidRequest("the manager cannot be destroyed; stop it instead")
    async with s.lock(name):
        if s.registry.find(name) is None:
            if not purge:
                dirs = await anyio.to_thread.run_sync(agent_dirs.list_dirs, s.settings.agents_dir)
                if name in dirs:
                    raise Conflict(f"{name} is already destroyed; add --purge to remove it")
                raise NotFound(f"no agent or tombstone named {name!r}")
            await agent_dirs.purge(s.settings.agents_dir, name)
            s.bus.publish(events.ContainerRemoved(name=name))
            return f"purged the tombstone of {name}"
        async with s.transients.recording(name, "destroy", actor):
            await s.backend.stop(name)
            await s.agent_sockets.close(name)
            await s.registry.remove(name)
            if s.federation is not None:
                await s.federation.release(name)
            s.stuck.forget(name)  # a later agent of this name starts with a clean slate
            s.configs.forget(name)
            await s.backend.destroy(name)
            s.bus.publish(events.ContainerRemoved(name=name))
            if purge:
                with contextlib.suppress(NotFound):  # its dir was already gone
                    await agent_dirs.purge(s.settings.agents_dir, name)
            else:
                tomb = AgentInfo(name=name, role="agent", state="tombstone")
                s.bus.publish(events.ContainerStateChanged(agent=tomb))
        return f"destroyed {name}" + (" and purged its state" if purge else "; tombstone kept")


def on_exit(s: Services, name: str, pid: int, code: int, expected: bool) -> None:
    """Backend hook: a harness process ended."""
    s.liveness.report_exit(name, pid)
    s.liveness.last_exit[name] = code
    if not expected:
        logger.warning("harness of %s (pid %d) exited on its own with %d", name, pid, code)
        s.on_unexpected_exit(name)
    publish_state(s, name)
