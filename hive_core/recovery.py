"""What start-up recovers after a daemon restart: every agent that should be running
(first moved off a web port another program took meanwhile), and the deploys a crash cut
short (their requesters told, one never seen to come up verified now or rolled back).
"""

from __future__ import annotations

import logging

import anyio

from hive_core import deploys
from hive_core.agent_info import publish_state
from hive_core.containers.nixos import NixosBackend
from hive_core.errors import BackendError, HiveError
from hive_core.launch import launch, own_port, web_port_free
from hive_core.notices import announce
from hive_core.registry import AgentRecord
from hive_core.services import Services
from hive_share.models import ApprovalStatus

logger = logging.getLogger(__name__)

RECOVERED: tuple[ApprovalStatus, ...] = ("in_progress", "pending")
"""What a deploy a restart interrupted may be: `pending` in a database from before
approvals were claimed."""


async def restore(s: Services) -> None:
    """Bring back, after a daemon restart, every agent that should be running; first, each
    agent whose web port another program took meanwhile moves to a free one."""
    await _move_off_held_ports(s)
    records = s.registry.all()
    for record in records:
        if record.role != "manager":
            await s.agent_sockets.open(record.name)

    async def bring_back(record: AgentRecord) -> None:
        try:
            async with s.lock(record.name):
                await launch(s, record)
        except BackendError as exc:
            logger.error("could not restore %s: %s", record.name, exc.message)
        publish_state(s, record.name)

    async with anyio.create_task_group() as tg:
        for record in records:
            if record.desired == "running":
                tg.start_soon(bring_back, record, name=f"restore {record.name}")


async def _move_off_held_ports(s: Services) -> None:
    """At start-up: every agent whose web port something listens on, unless that is its
    own running harness, moves to the next free port for good. A container an earlier
    hive-core left up holds its own port, so the nixos backend's states are read first."""
    records = s.registry.all()
    free = web_port_free(s)
    held = await anyio.to_thread.run_sync(lambda: [r for r in records if not free(r.web_port)])
    if not held:
        return
    if isinstance(s.backend, NixosBackend):
        try:
            await s.backend.refresh()
        except BackendError as exc:
            logger.error("could not read the containers' states, so no web port is moved "
                         "at start-up: %s", exc.message)  # fmt: skip
            return
    for record in held:
        async with s.lock(record.name):
            if s.registry.find(record.name) is None:
                continue  # destroyed meanwhile
            try:
                await own_port(s, record)
            except BackendError as exc:
                logger.error("%s keeps web port %d: %s", record.name, record.web_port,
                             exc.message)  # fmt: skip
        publish_state(s, record.name)


async def finish_interrupted(s: Services, done: deploys.Reconciled) -> None:
    """After a crash and the restore: requesters hear of the deploys their tags ended, and
    a deploy finalized but never seen to come up is verified now, or rolled back."""
    for approval in done.resolved:
        await announce(s, approval)
    for item in done.unverified:
        try:
            await _verify_interrupted(s, item)
        except HiveError as exc:
            logger.error("could not verify approval %d: %s", item.approval.id, exc.message)


async def _verify_interrupted(s: Services, item: deploys.Unverified) -> None:
    approval = item.approval
    name, sha = approval.agent, approval.commit or ""
    async with s.lock(name):
        record = s.registry.find(name)
        status = s.backend.status(name)
        problems = s.liveness.problems.get(name) or []
        if record is None or record.desired != "running":
            reason = f"deployed {sha[:12]} to {name} (finished after a restart)"
        elif status.running and s.liveness.is_alive(name, status.pid) and not problems:
            reason = f"deployed {sha[:12]} to {name} and restarted it (finished after a restart)"
        else:
            why = "did not come up after a restart: " + (
                f"its start check failed: {'; '.join(problems)}" if problems else "not running"
            )
            if status.running:
                await s.backend.stop(name)
            await deploys.roll_back(s, approval, item.previous, why)
            try:
                await launch(s, record)
            except BackendError as exc:
                logger.error("%s did not come back on its old config: %s", name, exc.message)
            publish_state(s, name)
            await announce(s, await s.approvals.resolve(approval.id, "failed", why, was=RECOVERED))
            return
    await announce(s, await s.approvals.resolve(approval.id, "approved", reason, was=RECOVERED))
