"""An approval from request to ending, the same for every surface: queue a spawn, a config
commit or an update (`request_*`; hive-core itself queues `budget` approvals, `budgets.py`);
`approve` claims one (`in_progress`), carries it out (a spawn, a deploy with its roll back, a
rebuild of every outdated agent, a raised budget) and records one ending the requester
hears; `deny` ends a pending one.
"""

from __future__ import annotations

import logging

from hive_core import build_version, deploys
from hive_core.agent_info import outdated, publish_state
from hive_core.containers.nixos import NixosBackend
from hive_core.errors import BackendError, Conflict, HiveError, InvalidRequest, ShuttingDown
from hive_core.launch import launch
from hive_core.lifecycle import rebuild, spawn
from hive_core.notices import announce, tell_requester
from hive_core.services import Services
from hive_core.specs import spec_for
from hive_share.models import Approval, ApprovalStatus

logger = logging.getLogger(__name__)

IN_PROGRESS: tuple[ApprovalStatus, ...] = ("in_progress",)
UPDATE_TARGET = "all"
"""The `agent` of an update approval: it concerns every agent (a reserved name)."""


async def request_spawn(s: Services, name: str, requester: str) -> Approval:
    """Queue a spawn for the operator. Raises: AlreadyExists, PortCollision, Conflict."""
    s.registry.check_new(name)
    return await s.approvals.add("spawn", name, requester)


async def request_apply_commit(
    s: Services, agent: str, commit: str, requester: str, bundle: deploys.Bundle | None = None
) -> Approval:
    """Queue a proposed config commit for the operator (from `bundle` when the manager runs
    on another host). Raises: see `deploys.propose`."""
    async with s.lock(agent):
        return await deploys.propose(s, agent, commit, requester, bundle)


async def request_update(s: Services, requester: str) -> Approval:
    """Queue a rebuild of every outdated agent (on the nixos backend: an update of meta's
    `hyperhive` input, then a rebuild of what it changed). Raises: InvalidRequest (none),
    Conflict."""
    stale = outdated(s)
    if not stale and not isinstance(s.backend, NixosBackend):
        raise InvalidRequest(f"every harness runs hyperhive {build_version()}; nothing to update")
    return await s.approvals.add("update", UPDATE_TARGET, requester)


async def approve(s: Services, approval_id: int, actor: str) -> str:
    """Approve and carry out a pending request. The approval moves to `in_progress` before
    anything is done, so a second approve or a deny of it is refused; it then ends
    `approved` or `failed`, and the requester hears which.

    Raises: NotFound, Conflict, BackendError, ShuttingDown.
    """
    approval = await s.approvals.claim(approval_id)
    logger.info("%s approved %d (%s of %s)", actor, approval_id, approval.kind, approval.agent)
    try:
        if approval.kind == "apply_commit":
            done = await _apply(s, approval, actor)
        elif approval.kind == "update":
            done = await _update(s, actor)
        elif approval.kind == "budget":
            done = await s.usage.grant(approval)
        else:
            await spawn(s, approval.agent, actor)
            done = f"spawned {approval.agent}"
    except ShuttingDown:
        raise  # left in_progress: the next start reconciles it
    except HiveError as exc:
        await _share(s, approval)
        await _end(s, approval_id, "failed", exc.message)
        raise
    except Exception as exc:  # a defect: still one recorded ending, and the requester told
        logger.exception("approval %d failed unexpectedly", approval_id)
        why = f"{approval.kind} of {approval.agent} failed: {type(exc).__name__}: {exc}"
        await _end(s, approval_id, "failed", why)
        raise BackendError(why) from None
    await _share(s, approval)
    await _end(s, approval_id, "approved", done)
    return f"approved {approval_id}: {done}"


async def _share(s: Services, approval: Approval) -> None:
    """On a hive of several hosts, share a config a deploy moved before its requester hears
    how it ended: the manager of another host then finds it in its working copy's remote."""
    if approval.kind == "apply_commit" and s.federation is not None:
        await s.federation.configs.share_now(approval.agent)


async def _end(s: Services, approval_id: int, status: ApprovalStatus, reason: str) -> None:
    await announce(s, await s.approvals.resolve(approval_id, status, reason, was=IN_PROGRESS))


async def _apply(s: Services, approval: Approval, actor: str) -> str:
    """Deploy an approved commit and restart the agent on it if it runs."""
    name, sha = approval.agent, approval.commit or ""
    async with s.lock(name), s.transients.recording(name, "deploy", actor):
        previous = await deploys.deploy(s, approval)
        record = s.registry.find(name)
        running = record is not None and s.backend.status(name).running
        if record is None:
            return f"deployed {sha[:12]} to {name}"
        try:
            if running:
                await s.backend.stop(name)
            await s.backend.finalize(spec_for(s, record))
            if not running:
                return f"deployed {sha[:12]} to {name}"
            await launch(s, record)
            if problems := s.liveness.problems.get(name):
                await s.backend.stop(name)
                raise BackendError(f"its start check failed: {'; '.join(problems)}")
        except BackendError as exc:
            why = f"did not come up: {exc.message}"
            await deploys.roll_back(s, approval, previous, why)
            try:
                if running:
                    await launch(s, record)  # back on the config it ran before
                else:
                    await s.backend.finalize(spec_for(s, s.registry.get(name)))
            except BackendError as again:
                logger.error("%s did not come back on its old config either: %s", name,
                             again.message)  # fmt: skip
            raise BackendError(
                f"deploy of {sha[:12]} to {name} was rolled back to "
                f"{(previous or '-')[:12]}: it {why}"
            ) from None
        finally:
            publish_state(s, name)
        model = s.liveness.models.get(name)
        return f"deployed {sha[:12]} to {name} and restarted it" + (
            f" (model {model})" if model else ""
        )


async def _update(s: Services, actor: str) -> str:
    stale = outdated(s)
    if isinstance(s.backend, NixosBackend):
        moved = await s.backend.update_hyperhive()
        running = [n for n in moved if s.backend.status(n).running]
        stale = sorted(set(stale) | set(running))
    failed = []
    for name in stale:
        try:
            await rebuild(s, name, actor)
        except HiveError as exc:
            failed.append(f"{name}: {exc.message}")
    if failed:
        raise BackendError("update failed for " + "; ".join(failed))
    return "rebuilt " + (", ".join(stale) if stale else "nothing (all up to date by now)")


async def deny(s: Services, approval_id: int, reason: str, actor: str) -> str:
    """End a pending approval as `denied` (recorded before its `denied/` tag is written).
    One being carried out is refused: the deny would not stop it.

    Raises: NotFound, Conflict.
    """
    approval = await s.approvals.get(approval_id)
    try:
        approval = await s.approvals.resolve(approval_id, "denied", reason or None)
    except Conflict as exc:
        if (await s.approvals.get(approval_id)).status == "in_progress":
            raise Conflict(f"{exc.message}; deny it after it finishes or roll back") from None
        raise
    if approval.commit is not None:  # its tag is written beside the agent's other git work
        async with s.lock(approval.agent):
            await deploys.tag_denied(s, approval, reason)
    await tell_requester(s, approval)
    logger.info(
        "%s denied approval %d (%s of %s)", actor, approval_id, approval.kind, approval.agent
    )
    if approval.kind == "budget":
        return f"denied {approval_id}: {approval.agent} stays held until the window rolls"
    return f"denied {approval_id}"
