"""Request handlers of the host, manager and agent sockets: one-liners onto services and actions."""

from __future__ import annotations

import logging
from typing import assert_never

import anyio

from hive_core import (
    __version__,
    agent_info,
    approval_flow,
    attention,
    build_version,
    deploys,
    harness_calls,
    harness_log,
    lifecycle,
    notices,
    open_threads,
)
from hive_core.containers.nixos import NixosBackend
from hive_core.errors import Forbidden, InvalidRequest
from hive_core.services import Services
from hive_core.sockets import routing
from hive_core.sockets.server import Conn
from hive_share import PROTOCOL_VERSION, helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import AttentionItem, WireModel
from hive_share.names import MANAGER_NAME

logger = logging.getLogger(__name__)

Common = rq.Version | rq.Ping | rq.Send | rq.Recv | rq.Ack | rq.Alive
Reports = (
    rq.SetStatus
    | rq.Whoami
    | rq.LoginState
    | rq.ReportTurnState
    | rq.ReportStuck
    | rq.ReportTurnUsage
    | rq.WatchLimitsQuery
)
Coordination = (
    rq.Ask
    | rq.AnswerQuestion
    | rq.Remind
    | rq.ListReminders
    | rq.CancelReminder
    | rq.GetOpenThreads
)


async def _messages(s: Services, req: rq.Send | rq.Recv | rq.Ack, conn: Conn) -> WireModel:
    """The broker's verbs, looked for first: nearly every request is one."""
    me = conn.principal.name
    if isinstance(req, rq.Send):
        if req.to == me:
            raise InvalidRequest("you cannot send a message to yourself")
        msg_id, dup = await s.broker.send(me, req.to, req.body, req.idempotency_key)
        return rs.Sent(id=msg_id, duplicate=dup)
    if isinstance(req, rq.Recv):
        # The ack first, durably: a foreign id refuses the whole recv, nothing leased.
        acked = await s.broker.ack(me, conn.id, req.ack) if req.ack else 0
        got = await s.broker.recv(me, conn.id, req.wait_seconds, req.max, conn.is_open)
        return rs.Messages(messages=got, acked=acked)
    return rs.Acked(count=await s.broker.ack(me, conn.id, req.ids))


async def _common(s: Services, req: Common, conn: Conn) -> WireModel:
    me = conn.principal.name
    match req:
        case rq.Version():
            return rs.VersionResult(protocol=PROTOCOL_VERSION, server=f"hive-core {__version__}")
        case rq.Ping():
            return rs.Pong()
        case rq.Send() | rq.Recv() | rq.Ack():
            return await _messages(s, req, conn)
        case rq.Alive(pid=pid, version=version, model=model, problems=problems):
            s.liveness.report_alive(me, pid, model, problems, req.model_source)
            if problems:
                logger.warning("%s started with problems: %s", me, "; ".join(problems))
            if version is not None:
                await _check_version(s, me, version)
            return rs.Done(detail=f"{me} is alive")
        case _:
            assert_never(req)


async def _check_version(s: Services, me: str, version: str) -> None:
    """Record which code `me`'s harness runs; when it is not the code hive-core runs (the
    build ids differ: `hive_share.build`), tell its overseer that it needs an update."""
    ours = await anyio.to_thread.run_sync(build_version)  # hashes the source once, then cached
    s.liveness.versions[me] = version
    if version != ours:
        await notices.tell_overseer(
            s,
            me,
            helper.NeedsUpdate(agent=me, detail=f"its harness is {version}, hive-core is {ours}"),
        )


async def _reports(s: Services, req: Reports, conn: Conn) -> WireModel:
    """What a harness (or its MCP tools) says about its own agent."""
    me = conn.principal.name
    match req:
        case rq.SetStatus(status=status):
            s.liveness.status[me] = status
            agent_info.publish_state(s, me)
            return rs.Done(detail=f"status set to {status!r}" if status else "status cleared")
        case rq.Whoami():
            record = s.registry.find(me)
            return rs.Identity(
                name=me,
                role=conn.principal.kind,
                web_port=record.web_port if record else None,
                config_root=str(s.settings.agents_dir) if me == MANAGER_NAME else None,
                remote_config_root=(
                    str(s.settings.remote_config_dir)
                    if me == MANAGER_NAME and s.federation is not None
                    else None
                ),
            )
        case rq.LoginState(state=state, detail=detail, expires_at=expires_at):
            await notices.login_state(s, me, state, detail, expires_at)
            return rs.Done(detail=f"recorded {me} as {state}")
        case rq.ReportTurnState(state=turn, model=model, model_source=source):
            live = s.liveness
            before = (live.turn_state.get(me), live.models.get(me), live.model_sources.get(me))
            live.turn_state[me] = turn
            if model is not None:
                live.models[me] = model
            if source is not None:
                live.model_sources[me] = source
            if (turn, live.models.get(me), live.model_sources.get(me)) != before:
                agent_info.publish_state(s, me)
            s.stuck.turn_state(me, turn)
            return rs.Done(detail=f"{me} is {turn}")
        case rq.ReportStuck():
            await s.stuck.report(me, req)
            return rs.Done(detail=f"recorded {req.signal} for {me}")
        case rq.WatchLimitsQuery():
            return s.stuck.limits(me)
        case rq.ReportTurnUsage(turn_id=turn_id):
            fresh = await s.usage.record(me, req)
            if fresh:
                s.stuck.turn_used(me, req.tools, req.ended_at)
            return rs.Done(
                detail=f"recorded turn {turn_id}"
                if fresh
                else f"turn {turn_id} was recorded already"
            )
        case _:
            assert_never(req)


async def _turn_slot(s: Services, req: rq.TurnSlot, conn: Conn) -> rs.TurnSlotState:
    slots, granted = s.turn_slots, False
    match req.action:
        case "take":
            me, oldest = conn.principal.name, req.oldest
            if oldest is not None and not s.broker.is_leased(me, oldest):
                oldest = None  # ranks by a message this agent is working on, or not at all
            granted = await slots.take(me, conn.id, oldest, conn.is_open, req.wait_seconds)
        case "started":
            slots.started(conn.id)
        case "give_back":
            slots.give_back(conn.id)
        case _:
            assert_never(req.action)
    return rs.TurnSlotState(
        granted=granted, ahead=slots.ahead_of(conn.id), running=slots.running, slots=slots.slots
    )


async def _coordination(s: Services, req: Coordination, conn: Conn) -> WireModel:
    """Questions, reminders and open threads, as an agent or the manager."""
    me = conn.principal.name
    match req:
        case rq.Ask(question=text, to=to, options=options, ttl_seconds=ttl):
            asked = await s.questions.ask(me, to, text, options, ttl)
            return rs.QuestionResult(question=asked)
        case rq.AnswerQuestion(id=question_id, answer=answer, host=host):
            if (there := routing.holder(s, host)) is not None and s.federation is not None:
                request = {"cmd": "answer", "id": question_id, "answer": answer, "host": there,
                           "answerer": me}  # fmt: skip
                return await s.federation.forward(there, request)  # held there
            return rs.QuestionResult(question=await s.questions.answer(question_id, answer, me))
        case rq.Remind(message=message, at=at, in_seconds=delay, file_path=path):
            reminder = await s.reminders.add(me, message, at, delay, path)
            return rs.ReminderResult(reminder=reminder)
        case rq.ListReminders(id=reminder_id, agent=agent):
            if agent is not None and agent != me:
                raise Forbidden("you can list only your own reminders; leave `agent` out")
            return rs.RemindersResult(reminders=await s.reminders.listing(me, reminder_id))
        case rq.CancelReminder(id=reminder_id):
            return rs.ReminderResult(reminder=await s.reminders.cancel(me, reminder_id))
        case rq.GetOpenThreads():
            if conn.principal.kind == "manager":
                return await open_threads.hive_wide(s)
            return await open_threads.for_agent(s, me)
        case _:
            assert_never(req)


async def handle_host(s: Services, req: rq.HostRequest, conn: Conn) -> WireModel:  # noqa: C901
    who = conn.principal.name
    if (host := routing.elsewhere(s, req)) is not None and s.federation is not None:
        answered = await s.federation.forward(host, req.model_dump(mode="json"))  # runs there
        if isinstance(req, rq.LoginLink) and isinstance(answered, rs.Done):
            return rs.Done(detail=s.federation.page_on(host, answered.detail))
        return answered
    match req:
        case rq.Send():
            return await _messages(s, req, conn)
        case rq.Version() | rq.Ping():
            return await _common(s, req, conn)
        case rq.Spawn(name=name, host=host):
            if (there := routing.placed(s, host)) is not None and s.federation is not None:
                request = {"cmd": "spawn", "name": name, "host": there}
                return await s.federation.forward(there, request)  # spawned there
            info = await lifecycle.spawn(s, name, who)
            return rs.Done(detail=f"spawned {info.name} (pid {info.pid}, web port {info.web_port})")
        case rq.RequestSpawn(name=name, host=host):
            return await _request_spawn(s, name, host, who)
        case rq.Update():
            return rs.ApprovalResult(approval=await approval_flow.request_update(s, who))
        case rq.ShowApproval(id=approval_id):
            return rs.ApprovalResult(approval=await s.approvals.get(approval_id))
        case rq.Approve(id=approval_id):
            return rs.Done(detail=await approval_flow.approve(s, approval_id, who))
        case rq.Deny(id=approval_id, reason=reason):
            return rs.Done(detail=await approval_flow.deny(s, approval_id, reason, who))
        case rq.Start(name=name):
            return rs.Done(detail=await lifecycle.start(s, name, who))
        case rq.Stop(name=name):
            return rs.Done(detail=await lifecycle.stop(s, name, who))
        case rq.Kill(name=name):
            return rs.Done(detail=await lifecycle.kill(s, name, who))
        case rq.Restart(name=name):
            return rs.Done(detail=await lifecycle.restart(s, name, who))
        case rq.Rebuild(name=name):
            return rs.Done(detail=await lifecycle.rebuild(s, name, who))
        case rq.Destroy(name=name, purge=purge):
            return rs.Done(detail=await lifecycle.destroy(s, name, purge, who))
        case rq.List():
            return rs.Agents(agents=await agent_info.list_agents(s, tombstones=True))
        case rq.Hosts():
            if s.federation is None:
                return rs.HostsResult(federated=False, hosts=[])
            return rs.HostsResult(federated=True, hosts=await s.federation.hosts())
        case rq.AnswerQuestion(id=question_id, answer=answer):
            return rs.QuestionResult(question=await s.questions.answer(question_id, answer, who))
        case rq.CancelQuestion(id=question_id):
            return rs.QuestionResult(question=await s.questions.cancel(question_id))
        case rq.Questions():
            return rs.QuestionsResult(questions=await routing.hive_questions(s))
        case rq.ListReminders(id=reminder_id, agent=agent):
            return rs.RemindersResult(reminders=await s.reminders.listing(agent, reminder_id))
        case rq.GetOpenThreads():
            return await open_threads.hive_wide(s)
        case rq.DeployedConfig(name=name):
            return await deploys.deployed_files(s, name)
        case rq.Relay(name=name, request=request):
            return await harness_calls.relay(s, name, request)
        case rq.HarnessLog(name=name, lines=lines, offset=None):
            got = await harness_log.tail(s, name, lines)
            return rs.LogLines(lines=got.lines, truncated=got.truncated, offset=got.offset)
        case rq.HarnessLog(name=name, offset=offset):
            data, end = await harness_log.read_from(s, name, offset or 0)
            cut = data.rfind(b"\n") + 1 or len(data)  # whole lines; a huge one in pieces
            if cut == len(data) and not data.endswith(b"\n") and len(data) < harness_log.CHUNK:
                cut = 0  # a line still being written: it comes whole next time
            return rs.LogLines(lines=harness_log.lines_of(data[:cut]), offset=end - len(data) + cut)
        case rq.LoginLink(name=name):
            if name is not None:
                return rs.Done(detail=await harness_calls.page_link(s, name))
            if s.login_link is None:
                raise InvalidRequest("the dashboard is not listening yet")
            return rs.Done(detail=s.login_link())
        case rq.Pending():
            return rs.Approvals(approvals=await routing.hive_approvals(s))
        case rq.Attention() | rq.Usage():
            return await _overview(s, req, for_manager=False)
        case rq.NotifyStatus():
            return rs.NotifyTargets(targets=s.notifier.status())
        case rq.NotifyTest():
            return rs.NotifyTested(outcomes=await s.notifier.test())
        case rq.Inbox(limit=limit, wait_seconds=wait, before=before, after=after):
            return rs.Messages(messages=await s.broker.operator_inbox(limit, wait, before, after))
        case _:
            assert_never(req)


async def _overview(s: Services, req: rq.Attention | rq.Usage, *, for_manager: bool) -> WireModel:
    """The hive at a glance: the attention list (the manager's without the operator's inbox),
    or what the agents spent."""
    match req:
        case rq.Attention():
            items = await _attention(s)
            return rs.AttentionList(items=attention.for_manager(items) if for_manager else items)
        case rq.Usage(agent=agent, window=window, hourly=hourly):
            return await s.usage.report(agent, window, hourly)
        case _:
            assert_never(req)


async def _attention(s: Services) -> list[AttentionItem]:
    """The attention list as it is now (computed, not the last one published)."""
    if s.attention is None:
        raise InvalidRequest("the attention list is not running yet")
    return await s.attention.compute()


async def _request_spawn(s: Services, name: str, host: str | None, who: str) -> WireModel:
    """Queue a spawn approval on the host the agent is to run on (`host`, or the one with
    the most free places): the approval is that host's, decided there; `who` hears how it
    ends wherever it runs."""
    if (there := routing.placed(s, host)) is not None and s.federation is not None:
        request = {"cmd": "request_spawn", "name": name, "host": there, "requester": who}
        answer = await s.federation.forward(there, request)
        return routing.stamped(answer, there)
    return rs.ApprovalResult(approval=await approval_flow.request_spawn(s, name, who))


async def _config(
    s: Services, req: rq.RequestInitConfig | rq.RequestApplyCommit, who: str
) -> WireModel:
    """The manager's config verbs, on an agent of this host or of another."""
    match req:
        case rq.RequestInitConfig(name=name):
            if (fed := routing.runs_elsewhere(s, name)) is not None:
                repos = await fed.configs.working_copy(name)
            else:
                repos = await lifecycle.init_config(s, name)
            if isinstance(s.backend, NixosBackend):  # the running manager sees them now
                await s.backend.share_with_manager()
            return repos
        case rq.RequestApplyCommit(agent=agent, commit=commit):
            if (fed := routing.runs_elsewhere(s, agent)) is None:
                approval = await approval_flow.request_apply_commit(s, agent, commit, who)
                return rs.ApprovalResult(approval=approval)
            answer = await fed.configs.propose(agent, commit, who)
            return routing.stamped(answer, fed.host_of(agent))


def _sub_agent(name: str) -> str:
    if name == MANAGER_NAME:
        raise InvalidRequest("the manager acts on sub-agents only, not on itself")
    return name


async def _manage(
    s: Services, req: rq.Start | rq.Kill | rq.Restart | rq.Rebuild, who: str
) -> WireModel:
    """The manager's lifecycle verbs on a sub-agent, of this host or (run there, as the
    manager's) of another."""
    name = _sub_agent(req.name)
    if (fed := routing.runs_elsewhere(s, name)) is not None and (there := fed.host_of(name)):
        return await fed.forward(there, {"cmd": req.cmd, "name": name, "by": who})
    act = {"start": lifecycle.start, "kill": lifecycle.kill, "restart": lifecycle.restart,
           "rebuild": lifecycle.rebuild}[req.cmd]  # fmt: skip
    return rs.Done(detail=await act(s, name, who))


async def handle_manager(s: Services, req: rq.ManagerRequest, conn: Conn) -> WireModel:
    """The manager's lifecycle verbs; every other verb it has is an agent's verb."""
    who = conn.principal.name
    match req:
        case rq.RequestSpawn(name=name, host=host):
            return await _request_spawn(s, name, host, who)
        case rq.RequestInitConfig() | rq.RequestApplyCommit():
            return await _config(s, req, who)
        case rq.Update():
            return rs.ApprovalResult(approval=await approval_flow.request_update(s, who))
        case rq.Start() | rq.Kill() | rq.Restart() | rq.Rebuild():
            return await _manage(s, req, who)
        case rq.List():
            return rs.Agents(agents=await agent_info.list_agents(s, tombstones=False))
        case rq.Attention() | rq.Usage():
            return await _overview(s, req, for_manager=True)
        case _:
            return await handle_agent(s, req, conn)


async def handle_agent(s: Services, req: rq.AgentRequest, conn: Conn) -> WireModel:
    match req:
        case rq.Send() | rq.Recv() | rq.Ack():
            return await _messages(s, req, conn)
        case (
            rq.SetStatus()
            | rq.Whoami()
            | rq.LoginState()
            | rq.ReportTurnState()
            | rq.ReportStuck()
            | rq.ReportTurnUsage()
            | rq.WatchLimitsQuery()
        ):
            return await _reports(s, req, conn)
        case rq.TurnSlot():
            return await _turn_slot(s, req, conn)
        case (
            rq.Ask()
            | rq.AnswerQuestion()
            | rq.Remind()
            | rq.ListReminders()
            | rq.CancelReminder()
            | rq.GetOpenThreads()
        ):
            return await _coordination(s, req, conn)
        case _:
            return await _common(s, req, conn)
