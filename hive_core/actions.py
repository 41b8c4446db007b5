"""Lifecycle and approval actions: the one implementation behind the admin socket,
the manager socket and the dashboard, so the surfaces never drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from hive_core import agent_dirs, build_version, config_repos, deploys, meta
from hive_core.containers.backend import AgentSpec
from hive_core.containers.nixos import NixosBackend
from hive_core.dashboard import auth
from hive_core.errors import (
    AlreadyExists,
    BackendError,
    Conflict,
    HiveError,
    InvalidRequest,
    NotFound,
    PortCollision,
    ShuttingDown,
    UnknownAgent,
)
from hive_core.liveness import harness_call, ping
from hive_core.meta import MetaAgent
from hive_core.ports import holds, loopback_listeners, port_free, socket_owner
from hive_core.registry import AgentRecord
from hive_core.services import Services
from hive_core.specs import spec_for
from hive_share import events, helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import (
    AgentInfo,
    AgentState,
    Approval,
    ApprovalStatus,
    LoginReport,
    Role,
)
from hive_share.names import MANAGER_NAME, OPERATOR

logger = logging.getLogger(__name__)

ALIVE_TIMEOUT = 30.0
"""How long a started harness has to report itself alive."""
PAGE_WAIT = 10.0
"""How long a login link waits for a harness just started to listen on its web port."""
PAGE_POLL = 0.05


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
        deployed_commit=record.deployed_commit,
        model=s.liveness.models.get(record.name),
        model_source=s.liveness.model_sources.get(record.name),
        turn_state=s.liveness.turn_state.get(record.name) if status.running else None,
        needs_update=runs_other_code(s, record.name),
    )


def publish_state(s: Services, name: str) -> None:
    record = s.registry.find(name)
    if record is not None:
        s.bus.publish(events.ContainerStateChanged(agent=info(s, record)))


async def _launch(s: Services, record: AgentRecord) -> AgentRecord:
    """Start the harness (on a web port no other program holds) and wait for it to report
    itself alive; the record it started with.

    Raises:
        ShuttingDown: hive-core is stopping; nothing was started.
        BackendError: it exited or stayed silent (the message quotes its log), or every
            web port of the range is taken.
    """
    if s.stopping:
        raise ShuttingDown(f"hive-core is stopping; {record.name} was not started")
    record = await _own_port(s, record)
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


async def _own_port(s: Services, record: AgentRecord) -> AgentRecord:
    """The agent's current record; when another program holds its web port (its harness is
    not running, so it is not the holder), first moved for good to the next free one.

    Raises: BackendError (every web port of the range is taken).
    """
    record = s.registry.get(record.name)
    name, held = record.name, record.web_port
    if s.backend.status(name).running or await asyncio.to_thread(_port_free(s), held):
        return record
    try:
        record = await s.registry.move_port(name, _port_free(s))
    except PortCollision as exc:
        raise BackendError(f"another program holds web port {held} of {name}, and "
                           f"{exc.message}") from None  # fmt: skip
    logger.warning("another program holds web port %d of %s; it moves to port %d for good",
                   held, name, record.web_port)  # fmt: skip
    return record


async def _log_tail(s: Services, spec: AgentSpec, max_chars: int = 600) -> str:
    try:
        got = await s.backend.log_tail(spec, 20)
    except (NotFound, BackendError) as exc:
        return f"(log unreadable: {exc.message})"
    return "\n".join(got.lines).strip()[-max_chars:] or "(empty)"


async def _create(s: Services, name: str, role: Role, actor: str) -> AgentInfo:
    if s.registry.find(name) is not None:
        raise AlreadyExists(f"agent {name!r} already exists")
    port = s.registry.check_new(name)
    if isinstance(s.backend, NixosBackend):
        await _preflight(s, s.backend, MetaAgent(name, role, port, name, None))
    async with s.transients.recording(name, "spawn", actor):
        await agent_dirs.create_dirs(s.settings.agents_dir, name)
        deployed, _ = await config_repos.seed(s.settings.agents_dir, name)
        record = await s.registry.add(name, role, _port_free(s))
        await asyncio.to_thread(agent_dirs.clear_prepared, s.settings.agents_dir, name)
        await s.registry.set_deployed(name, deployed)
        record = s.registry.get(name)
        if role != "manager":
            await s.agent_sockets.open(name)
        try:
            record = await _launch(s, record)
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


async def spawn(s: Services, name: str, actor: str) -> AgentInfo:
    """Create and start agent `name` (a revived tombstone keeps its state).

    Raises:
        AlreadyExists, PortCollision, BackendError.
    """
    async with s.lock(name):
        return await _create(s, name, "agent", actor)


async def ensure_manager(s: Services) -> None:
    """Create the manager agent if it does not exist yet."""
    async with s.lock(MANAGER_NAME):
        if s.registry.find(MANAGER_NAME) is None:
            await _create(s, MANAGER_NAME, "manager", "hive-core")


async def init_config(s: Services, name: str) -> rs.ConfigRepos:
    """Seed `name`'s config repos (idempotent); the agent need not exist yet.

    Raises:
        BackendError: a directory is in the way, or git failed.
    """
    async with s.lock(name):
        await agent_dirs.create_dirs(s.settings.agents_dir, name)
        sha, seeded = await config_repos.seed(s.settings.agents_dir, name)
        if s.registry.find(name) is None:
            await asyncio.to_thread(agent_dirs.mark_prepared, s.settings.agents_dir, name)
            prepared = AgentInfo(name=name, role="agent", state="prepared")
            s.bus.publish(events.ContainerStateChanged(agent=prepared))
    return rs.ConfigRepos(
        agent=name,
        proposed=str(s.settings.agents_dir / name / "proposed"),
        applied_commit=sha,
        seeded=seeded,
    )


async def request_spawn(s: Services, name: str, requester: str) -> Approval:
    """Queue a spawn for the operator. Raises: AlreadyExists, PortCollision, Conflict."""
    s.registry.check_new(name)
    return await s.approvals.add("spawn", name, requester)


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
        else:
            await spawn(s, approval.agent, actor)
            done = f"spawned {approval.agent}"
    except ShuttingDown:
        raise  # left in_progress: the next start reconciles it
    except HiveError as exc:
        await _end(s, approval_id, "failed", exc.message)
        raise
    except Exception as exc:  # a defect: still one recorded ending, and the requester told
        logger.exception("approval %d failed unexpectedly", approval_id)
        why = f"{approval.kind} of {approval.agent} failed: {type(exc).__name__}: {exc}"
        await _end(s, approval_id, "failed", why)
        raise BackendError(why) from None
    await _end(s, approval_id, "approved", done)
    return f"approved {approval_id}: {done}"


async def _end(s: Services, approval_id: int, status: ApprovalStatus, reason: str) -> None:
    await announce(s, await s.approvals.resolve(approval_id, status, reason, was=IN_PROGRESS))


IN_PROGRESS: tuple[ApprovalStatus, ...] = ("in_progress",)
RECOVERED: tuple[ApprovalStatus, ...] = ("in_progress", "pending")
"""What a deploy a restart interrupted may be: `pending` in a database from before
approvals were claimed."""


RELAY_TIMEOUT = 10.0


RelayRequest = rq.Cancel | rq.NewSession | rq.SetModel | rq.Compact | rq.Events | rq.LoginControl
Relayed = rs.Done | rs.TurnEvents | rs.LoginProgress
RELAYED: TypeAdapter[Relayed] = TypeAdapter(Annotated[Relayed, Field(discriminator="result")])


async def relay(s: Services, name: str, request: RelayRequest) -> Relayed:
    """Hand a turn control to `name`'s harness and return its answer.

    Raises:
        UnknownAgent: no such agent.
        BackendError: its harness is not running, did not answer, or answered nonsense.
        InvalidRequest: the harness refused it.
    """
    if s.registry.find(name) is None:
        raise UnknownAgent(f"no agent named {name!r}")
    if not s.backend.status(name).running:
        raise BackendError(f"{name} is not running; `hive-core start {name}` first")
    try:
        answer = await harness_call(s.settings.harness_socket(name), request, RELAY_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BackendError(f"{name}'s harness did not answer {request.cmd}: {exc}") from None
    if answer.get("ok") is not True:
        raise InvalidRequest(f"{name}'s harness refused {request.cmd}: {answer.get('error')}")
    try:
        got = RELAYED.validate_python(answer)
    except ValidationError:
        raise BackendError(f"{name}'s harness answered {request.cmd} with nonsense") from None
    if isinstance(got, rs.Done):
        if isinstance(request, rq.SetModel):
            s.liveness.models[name] = request.model
            publish_state(s, name)
        return rs.Done(detail=f"{name}: {got.detail}")
    return got


async def page_link(s: Services, name: str) -> str:
    """A one-time link to `name`'s own page: hive-core mints the code and hands it to the
    harness, which accepts it once within 10 minutes.

    Raises: UnknownAgent, BackendError (not running, or its harness did not take it).
    """
    record = s.registry.find(name)
    if record is None:
        raise UnknownAgent(f"no agent named {name!r}")
    if not s.backend.status(name).running:
        raise BackendError(f"{name} is not running; its page is served by its harness")
    await _page_listens(s, record)
    code = secrets.token_urlsafe(32)
    send = None
    if s.dashboard_url is not None:  # the page sends the operator's messages through it
        send = await asyncio.to_thread(auth.send_token, s.settings.state_dir, name)
    request = rq.WebCode(cmd="web_code", code=code, send_token=send)
    try:
        answer = await harness_call(s.settings.harness_socket(name), request, RELAY_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BackendError(f"{name}'s harness did not take the code: {exc}") from None
    if answer.get("ok") is not True:
        raise BackendError(f"{name}'s harness refused the code: {answer.get('error')}")
    return f"http://127.0.0.1:{record.web_port}/login?code={code}"


def _port_free(s: Services) -> Callable[[int], bool]:
    """A probe of a web port where agent pages listen (where the dashboard does)."""
    return functools.partial(port_free, host=s.settings.dashboard_host)


async def _page_listens(s: Services, record: AgentRecord) -> None:
    """Whether `record`'s harness is what takes connections at its web port (where agent
    pages listen: the dashboard's address): a
    link there must never hand a login code to another program. A harness just started
    binds its page a moment after it reports alive, so an unbound port is waited for.

    Raises: BackendError (another program listens there, or nothing does).
    """
    name, port = record.name, record.web_port
    try:
        harness = await asyncio.to_thread(socket_owner, s.settings.harness_socket(name))
    except OSError as exc:
        raise BackendError(f"{name}'s harness did not answer: {exc}") from None
    deadline = time.monotonic() + PAGE_WAIT
    where = s.settings.dashboard_host
    while not (listeners := await asyncio.to_thread(loopback_listeners, port, where)):
        if time.monotonic() > deadline:
            raise BackendError(f"nothing listens on port {port}, {name}'s web port: its page "
                               "is not served (its log says why)")  # fmt: skip
        await asyncio.sleep(PAGE_POLL)
    try:
        ours = await asyncio.to_thread(holds, harness, listeners)
    except OSError:  # it just exited, or its files are not ours to read: web_code decides
        return
    if not ours:
        raise BackendError(
            f"another program listens on port {port}, not {name}'s harness, so no link "
            f"is made; `hive-core restart {name}` moves {name} to a free port"
        )


async def announce(s: Services, approval: Approval) -> None:
    """The requester hears how its approval ended; a failed deploy the manager asked for
    is the operator's news too."""
    await tell_requester(s, approval)
    if (
        approval.status == "failed"
        and approval.kind == "apply_commit"
        and approval.requester != OPERATOR
    ):
        await s.broker.notify(OPERATOR, _resolved(approval))


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
                await _launch(s, record)
            except BackendError as exc:
                logger.error("%s did not come back on its old config: %s", name, exc.message)
            publish_state(s, name)
            await announce(s, await s.approvals.resolve(approval.id, "failed", why, was=RECOVERED))
            return
    await announce(s, await s.approvals.resolve(approval.id, "approved", reason, was=RECOVERED))


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
            await _launch(s, record)
            if problems := s.liveness.problems.get(name):
                await s.backend.stop(name)
                raise BackendError(f"its start check failed: {'; '.join(problems)}")
        except BackendError as exc:
            why = f"did not come up: {exc.message}"
            await deploys.roll_back(s, approval, previous, why)
            try:
                if running:
                    await _launch(s, record)  # back on the config it ran before
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


UPDATE_TARGET = "all"
"""The `agent` of an update approval: it concerns every agent (a reserved name)."""


def runs_other_code(s: Services, name: str) -> bool:
    """Whether `name`'s harness reported a build other than the one hive-core runs
    (`hive_share.build`: the release and a digest of the source)."""
    reported = s.liveness.versions.get(name)
    return reported is not None and reported != build_version()


def outdated(s: Services) -> list[str]:
    """Agents whose harness runs other code than hive-core."""
    return [r.name for r in s.registry.all() if runs_other_code(s, r.name)]


async def request_update(s: Services, requester: str) -> Approval:
    """Queue a rebuild of every outdated agent (on the nixos backend: an update of meta's
    `hyperhive` input, then a rebuild of what it changed). Raises: InvalidRequest (none),
    Conflict."""
    stale = outdated(s)
    if not stale and not isinstance(s.backend, NixosBackend):
        raise InvalidRequest(f"every harness runs hyperhive {build_version()}; nothing to update")
    return await s.approvals.add("update", UPDATE_TARGET, requester)


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


async def request_apply_commit(s: Services, agent: str, commit: str, requester: str) -> Approval:
    """Queue a proposed config commit for the operator. Raises: see `deploys.propose`."""
    async with s.lock(agent):
        return await deploys.propose(s, agent, commit, requester)


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
    return f"denied {approval_id}"


async def tell_requester(s: Services, approval: Approval) -> None:
    """An agent that asked for something hears how it ended (the operator sees it directly)."""
    if approval.requester == OPERATOR or not s.registry.is_recipient(approval.requester):
        return
    await s.broker.notify(approval.requester, _resolved(approval))


def _resolved(approval: Approval) -> helper.ApprovalResolved:
    return helper.ApprovalResolved(
        id=approval.id, approval_kind=approval.kind, agent=approval.agent,
        status=approval.status, reason=approval.reason,
    )  # fmt: skip


async def tell_overseer(s: Services, about: str, event: helper.HelperEvent) -> None:
    """News about an agent goes to the manager; news about the manager to the operator."""
    to = (
        OPERATOR if about == MANAGER_NAME or s.registry.find(MANAGER_NAME) is None else MANAGER_NAME
    )
    await s.broker.notify(to, event)


async def start(s: Services, name: str, actor: str) -> str:
    async with s.lock(name):
        s.registry.get(name)
        if s.backend.status(name).running:
            return f"{name} is already running"
        async with s.transients.recording(name, "start", actor):
            await s.registry.set_desired(name, "running")
            try:
                await _launch(s, s.registry.get(name))
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
                await _launch(s, s.registry.get(name))
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
                if name in await asyncio.to_thread(agent_dirs.list_dirs, s.settings.agents_dir):
                    raise Conflict(f"{name} is already destroyed; add --purge to remove it")
                raise NotFound(f"no agent or tombstone named {name!r}")
            await agent_dirs.purge(s.settings.agents_dir, name)
            s.bus.publish(events.ContainerRemoved(name=name))
            return f"purged the tombstone of {name}"
        async with s.transients.recording(name, "destroy", actor):
            await s.backend.stop(name)
            await s.agent_sockets.close(name)
            await s.registry.remove(name)
            await s.backend.destroy(name)
            s.bus.publish(events.ContainerRemoved(name=name))
            if purge:
                with contextlib.suppress(NotFound):  # its dir was already gone
                    await agent_dirs.purge(s.settings.agents_dir, name)
            else:
                tomb = AgentInfo(name=name, role="agent", state="tombstone")
                s.bus.publish(events.ContainerStateChanged(agent=tomb))
        return f"destroyed {name}" + (" and purged its state" if purge else "; tombstone kept")


async def list_agents(s: Services, tombstones: bool) -> list[AgentInfo]:
    """Every agent with a fresh ping of its harness, then (optionally) the tombstones."""
    records = s.registry.all()

    async def probe(record: AgentRecord) -> bool:
        if not s.backend.status(record.name).running:
            return False
        return await ping(s.settings.harness_socket(record.name))

    alive = await asyncio.gather(*(probe(r) for r in records))
    rows = [info(s, r, a) for r, a in zip(records, alive, strict=True)]
    if tombstones:
        known = {r.name for r in records}
        dirs = await asyncio.to_thread(agent_dirs.list_dirs, s.settings.agents_dir)
        agents_dir = s.settings.agents_dir
        for name in dirs:
            if name not in known:
                prepared = agent_dirs.is_prepared(agents_dir, name)
                state: AgentState = "prepared" if prepared else "tombstone"
                rows.append(AgentInfo(name=name, role="agent", state=state))
    return rows


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
                await _launch(s, record)
        except BackendError as exc:
            logger.error("could not restore %s: %s", record.name, exc.message)
        publish_state(s, record.name)

    await asyncio.gather(*(bring_back(r) for r in records if r.desired == "running"))


async def _move_off_held_ports(s: Services) -> None:
    """At start-up: every agent whose web port something listens on, unless that is its
    own running harness, moves to the next free port for good. A container an earlier
    hive-core left up holds its own port, so the nixos backend's states are read first."""
    records = s.registry.all()
    held = await asyncio.to_thread(lambda: [r for r in records if not _port_free(s)(r.web_port)])
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
                await _own_port(s, record)
            except BackendError as exc:
                logger.error("%s keeps web port %d: %s", record.name, record.web_port,
                             exc.message)  # fmt: skip
        publish_state(s, record.name)


async def login_state(s: Services, name: str, state: LoginReport, detail: str) -> None:
    """A harness says its Claude Code login works again, or no longer does.

    Its overseer hears of a change from what it was last told, which the agents table keeps:
    a harness that reports the same after a daemon restart tells nobody again.
    """
    before = s.liveness.login.get(name, "unknown")
    s.liveness.login[name] = state
    if state != before:
        level = logging.INFO if state == "logged_in" else logging.WARNING
        logger.log(level, "%s is now %s%s", name, state, f": {detail}" if detail else "")
        publish_state(s, name)
    record = s.registry.find(name)
    if record is None or record.login_told == state:
        return
    news = _login_news(name, state, record.login_told, detail)
    keep = s.registry.tell_login(name, state)
    if news is not None:
        await tell_overseer(s, name, news)
    await s.db.write(keep)  # a daemon that dies before this tells the overseer once more


def _login_news(
    name: str, state: LoginReport, told: LoginReport | None, detail: str
) -> helper.HelperEvent | None:
    """What the overseer hears when `name`'s login is `state`, having last heard `told`."""
    if state == "needs_login":
        return helper.NeedsLogin(agent=name, detail=detail)
    if state == "claude_missing":
        return helper.ClaudeMissing(agent=name, detail=detail)
    if told in ("needs_login", "claude_missing"):
        return helper.LoggedIn(agent=name)
    return None  # logged in, and never told otherwise


def on_exit(s: Services, name: str, pid: int, code: int, expected: bool) -> None:
    """Backend hook: a harness process ended."""
    s.liveness.report_exit(name, pid)
    s.liveness.last_exit[name] = code
    if not expected:
        logger.warning("harness of %s (pid %d) exited on its own with %d", name, pid, code)
        s.on_unexpected_exit(name)
    publish_state(s, name)
