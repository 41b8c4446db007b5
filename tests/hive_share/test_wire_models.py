from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from hive_share import events, framing, helper, live, requests, responses
from hive_share.events import DASHBOARD_EVENT, DashboardEvent
from hive_share.models import (
    AgentInfo,
    AgentUsage,
    Approval,
    AttentionItem,
    HostInfo,
    InboxSummary,
    Message,
    NotifyOutcome,
    NotifyTarget,
    Question,
    Reminder,
    UsageHour,
    WireModel,
    dump,
)
from hive_share.requests import (
    AGENT_VERBS,
    ALL_VERBS,
    ANY_REQUEST,
    HARNESS_VERBS,
    HOST_VERBS,
    IDENTITY_FIELDS,
    MANAGER_VERBS,
    AnyRequest,
    variants,
)
from hive_share.responses import RESPONSE, Response

MESSAGE = Message(
    id=7,
    sender="alice",
    recipient="operator",
    body='hi "there"\n\u202eevil 日本 \x00',
    sent_at=1_700_000_000.25,
    delivered_at=1_700_000_001.5,
)
APPROVAL = Approval(
    id=3,
    kind="spawn",
    agent="bob",
    requester="hm1nd",
    status="denied",
    created_at=1_700_000_000.0,
    resolved_at=1_700_000_060.0,
    reason="not now",
)
AGENT = AgentInfo(
    name="alice",
    role="agent",
    state="running",
    pid=4242,
    uptime_seconds=12.5,
    web_port=8123,
    alive=True,
)

QUESTION = Question(
    id=5,
    asker="alice",
    target=None,
    question="deploy now?",
    options=["yes", "no"],
    created_at=1.0,
    expires_at=61.0,
    status="answered",
    answer="yes",
    answerer="operator",
    resolved_at=2.0,
)
ATTENTION = AttentionItem(
    key="approval:7",
    kind="approval",
    agent="alice",
    summary="spawn alice",
    since=12.5,
    severity="warn",
    action="hive-core approve 7",
    ref=7,
)
REMINDER = Reminder(
    id=4,
    agent="alice",
    message="check the build",
    due_at=100.0,
    file_path="/state/todo.md",
    status="delivered",
    created_at=1.0,
    delivered_at=100.5,
    payload="- a",
    payload_note="4 bytes",
)

SAMPLES: dict[type[WireModel], WireModel] = {
    # requests
    requests.Version: requests.Version(cmd="version"),
    requests.Ping: requests.Ping(cmd="ping"),
    requests.Send: requests.Send(cmd="send", to="operator", body="héllo\n", idempotency_key="k-1"),
    requests.Recv: requests.Recv(cmd="recv", wait_seconds=12.5, max=3, ack=[4, 5]),
    requests.Ack: requests.Ack(cmd="ack", ids=[1, 2, 3]),
    requests.Alive: requests.Alive(
        cmd="alive", pid=99, version="0.1.0", model="claude-x", problems=["mcp server a: no"]
    ),
    requests.ReportTurnState: requests.ReportTurnState(cmd="turn_state", state="thinking"),
    requests.ReportStuck: requests.ReportStuck(
        cmd="stuck", signal="repetition", turn_id="t-1", detail="Bash x5"
    ),
    requests.WatchLimitsQuery: requests.WatchLimitsQuery(cmd="watch_limits"),
    requests.TurnSlot: requests.TurnSlot(
        cmd="turn_slot", action="take", wait_seconds=60, oldest=41
    ),
    requests.ReportTurnUsage: requests.ReportTurnUsage(
        cmd="turn_usage",
        turn_id="t-1",
        started_at=1.0,
        ended_at=2.5,
        model="sonnet",
        result_kind="success",
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.25,
        tools={"Bash": 2},
    ),
    requests.NotifyStatus: requests.NotifyStatus(cmd="notify_status"),
    requests.NotifyTest: requests.NotifyTest(cmd="notify_test"),
    requests.Usage: requests.Usage(cmd="usage", agent="alice", window="5h", hourly=True),
    requests.Compact: requests.Compact(cmd="compact"),
    requests.WebCode: requests.WebCode(cmd="web_code", code="c" * 43),
    requests.HiveSignals: requests.HiveSignals(cmd="hive_signals", signals=["ping_pong"]),
    requests.LoginStart: requests.LoginStart(cmd="login_start"),
    requests.LoginCode: requests.LoginCode(cmd="login_code", code="abc#def"),
    requests.LoginCancel: requests.LoginCancel(cmd="login_cancel"),
    requests.LoginStatus: requests.LoginStatus(cmd="login_status", after=5, wait_seconds=1),
    requests.Events: requests.Events(cmd="events", after=3, limit=10, wait_seconds=2),
    requests.HarnessLog: requests.HarnessLog(cmd="harness_log", name="alice", offset=10),
    requests.DeployedConfig: requests.DeployedConfig(cmd="deployed_config", name="alice"),
    requests.Relay: requests.Relay(
        cmd="relay", name="alice", request=requests.SetModel(cmd="set_model", model="claude-y")
    ),
    requests.SetStatus: requests.SetStatus(cmd="set_status", status="reviewing PR 12"),
    requests.Whoami: requests.Whoami(cmd="whoami"),
    requests.LoginState: requests.LoginState(cmd="login_state", state="needs_login", detail="401"),
    requests.Cancel: requests.Cancel(cmd="cancel"),
    requests.NewSession: requests.NewSession(cmd="new_session"),
    requests.SetModel: requests.SetModel(cmd="set_model", model="claude-sonnet-5-5[1m]"),
    requests.TurnStatus: requests.TurnStatus(cmd="turn_status", after_turns=2, wait_seconds=5),
    requests.LoginLink: requests.LoginLink(cmd="login_link", name="alice"),
    requests.Ask: requests.Ask(
        cmd="ask", question="ok?", to="bob", options=["y", "n"], ttl_seconds=60
    ),
    requests.AnswerQuestion: requests.AnswerQuestion(cmd="answer", id=5, answer="y"),
    requests.CancelQuestion: requests.CancelQuestion(cmd="cancel_question", id=5),
    requests.Questions: requests.Questions(cmd="questions"),
    requests.Remind: requests.Remind(
        cmd="remind", message="hi", in_seconds=30, file_path="/state/notes.md"
    ),
    requests.ListReminders: requests.ListReminders(cmd="list_reminders", id=4, agent="alice"),
    requests.CancelReminder: requests.CancelReminder(cmd="cancel_reminder", id=4),
    requests.GetOpenThreads: requests.GetOpenThreads(cmd="get_open_threads"),
    requests.Attention: requests.Attention(cmd="attention"),
    requests.Spawn: requests.Spawn(cmd="spawn", name="alice"),
    requests.RequestSpawn: requests.RequestSpawn(cmd="request_spawn", name="bob"),
    requests.RequestInitConfig: requests.RequestInitConfig(cmd="request_init_config", name="bob"),
    requests.RequestApplyCommit: requests.RequestApplyCommit(
        cmd="request_apply_commit", agent="bob", commit="4b8e" * 10
    ),
    requests.ShowApproval: requests.ShowApproval(cmd="show_approval", id=3),
    requests.Update: requests.Update(cmd="update"),
    requests.Approve: requests.Approve(cmd="approve", id=4),
    requests.Deny: requests.Deny(cmd="deny", id=5, reason="no"),
    requests.Start: requests.Start(cmd="start", name="alice"),
    requests.Stop: requests.Stop(cmd="stop", name="alice"),
    requests.Kill: requests.Kill(cmd="kill", name="alice"),
    requests.Restart: requests.Restart(cmd="restart", name="alice"),
    requests.Rebuild: requests.Rebuild(cmd="rebuild", name="alice"),
    requests.Destroy: requests.Destroy(cmd="destroy", name="alice", purge=True),
    requests.List: requests.List(cmd="list"),
    requests.Hosts: requests.Hosts(cmd="hosts"),
    requests.Pending: requests.Pending(cmd="pending"),
    requests.Inbox: requests.Inbox(cmd="inbox", limit=10, wait_seconds=2.0, before=99),
    # responses
    responses.Error: responses.Error(code="unknown_agent", error="no agent named 'zed'"),
    responses.VersionResult: responses.VersionResult(protocol=1, server="hive-core 0.1.0"),
    responses.Pong: responses.Pong(),
    responses.Sent: responses.Sent(id=12, duplicate=True),
    responses.Messages: responses.Messages(
        messages=[
            MESSAGE,
            Message(
                id=8,
                sender="hive",
                recipient="hm1nd",
                body="alice crashed",
                sent_at=1.0,
                event=helper.ContainerCrash(agent="alice", detail="-9"),
            ),
        ],
        acked=2,
    ),
    responses.Acked: responses.Acked(count=2),
    responses.Agents: responses.Agents(agents=[AGENT]),
    responses.HostsResult: responses.HostsResult(
        federated=True,
        hosts=[
            HostInfo(
                host="alpha",
                this=True,
                capacity=30,
                agents=2,
                last_seen_seconds=0.0,
                link="up",
                pending_forwards=0,
                forwarded=3,
                received=1,
                refused=0,
            ),
            HostInfo(host="beta", this=False, capacity=30, agents=1, last_seen_seconds=4.5),
        ],
    ),
    responses.Approvals: responses.Approvals(approvals=[APPROVAL]),
    responses.ApprovalResult: responses.ApprovalResult(approval=APPROVAL),
    responses.Identity: responses.Identity(name="alice", role="agent", web_port=42001),
    responses.ConfigRepos: responses.ConfigRepos(
        agent="bob", proposed="/s/agents/bob/proposed", applied_commit="4b8e" * 10, seeded=True
    ),
    responses.TurnEvent: responses.TurnEvent(
        seq=4, ts=1.5, turn_id="t1", event=live.Note(text="compacting")
    ),
    responses.TurnEvents: responses.TurnEvents(
        events=[responses.TurnEvent(seq=4, ts=1.5, event=live.Text(text="hi"))]
    ),
    responses.LoginProgress: responses.LoginProgress(
        state="running",
        url="https://x.example/a",
        output="Paste code > ",
        offset=13,
        waiting_for_code=True,
    ),
    responses.LogLines: responses.LogLines(lines=["a", "b"], truncated=True, offset=40),
    responses.ConfigFiles: responses.ConfigFiles(commit="4b8e", files={"agent.toml": "x"}),
    responses.HarnessState: responses.HarnessState(
        turn_state="idle",
        turns_run=3,
        model="opus",
        login="logged_in",
        last_result="success",
        last_turn_id="abc",
    ),
    responses.QuestionResult: responses.QuestionResult(question=QUESTION),
    responses.QuestionsResult: responses.QuestionsResult(questions=[QUESTION]),
    responses.ReminderResult: responses.ReminderResult(reminder=REMINDER),
    responses.RemindersResult: responses.RemindersResult(reminders=[REMINDER]),
    responses.AttentionList: responses.AttentionList(items=[ATTENTION]),
    responses.NotifyTargets: responses.NotifyTargets(
        targets=[
            NotifyTarget(
                url="ntfy://****@ntfy.example/hive",
                severity="warn",
                kinds=["approval"],
                sent=3,
                last_ok_at=10.0,
                last_error="timed out",
                last_error_at=5.0,
                queued=1,
                dropped=0,
            )
        ]
    ),
    responses.NotifyTested: responses.NotifyTested(
        outcomes=[NotifyOutcome(url="json://hook.example/x", ok=False, error="HTTP 500")]
    ),
    responses.WatchLimits: responses.WatchLimits(
        no_progress_seconds=600.0, repeat=5, burn_tokens=2_000_000
    ),
    responses.UsageReport: responses.UsageReport(
        now=7200.0,
        usage=[
            AgentUsage(
                agent="alice",
                window="5h",
                turns=2,
                input_tokens=10,
                output_tokens=5,
                cache_creation_input_tokens=1,
                cache_read_input_tokens=100,
                tokens=16,
                cost_usd=0.5,
                limit_tokens=20,
                state="warning",
            )
        ],
        hourly=[UsageHour(agent="alice", hour=3600.0, tokens=16, cost_usd=0.5)],
    ),
    responses.OpenThreads: responses.OpenThreads(
        approvals=[APPROVAL], questions=[QUESTION], pending_reminders=2
    ),
    responses.TurnSlotState: responses.TurnSlotState(granted=False, ahead=2, running=4, slots=4),
    responses.Done: responses.Done(detail="alice started"),
    # helper events
    helper.ContainerCrash: helper.ContainerCrash(
        agent="alice", detail="exit -9 \u202e", restart_in_seconds=5.0
    ),
    helper.NeedsLogin: helper.NeedsLogin(agent="alice", detail="401"),
    helper.ClaudeMissing: helper.ClaudeMissing(agent="alice", detail="claude is not on PATH"),
    helper.LoggedIn: helper.LoggedIn(agent="alice"),
    helper.NeedsUpdate: helper.NeedsUpdate(agent="alice", detail="0.1.0 vs 0.2.0"),
    helper.QuestionAsked: helper.QuestionAsked(
        id=5, asker="alice", question="ok?", options=["y", "n"], expires_at=9.0
    ),
    helper.QuestionAnswered: helper.QuestionAnswered(
        id=5, question="ok?", outcome="expired", answer=None, answerer="watchdog"
    ),
    helper.Stuck: helper.Stuck(agent="alice", signal="ping_pong", detail="41 messages", peer="bob"),
    helper.BudgetReached: helper.BudgetReached(
        agent="alice", window="5h", used=2e6, limit=2e6, unit="tokens", hard=True
    ),
    helper.ReminderDue: helper.ReminderDue(
        id=4, message="check", payload_bytes=10, payload_note="/state/a: 10 bytes"
    ),
    helper.ApprovalResolved: helper.ApprovalResolved(
        id=3, approval_kind="spawn", agent="bob", status="denied", reason="no"
    ),
    # live events
    live.LoginOutput: live.LoginOutput(text="Paste code here > "),
    live.MessagesReceived: live.MessagesReceived(
        messages=[live.ReceivedMessage(id=3, sender="operator", body="hi", sent_at=1.5)]
    ),
    live.LoginChanged: live.LoginChanged(state="failed", url="https://x.example/", detail="no"),
    live.TurnStarted: live.TurnStarted(
        turn_id="t1", wake_from=["operator"], new_session=False, model="opus"
    ),
    live.TurnEnded: live.TurnEnded(turn_id="t1", result="success", duration_ms=812),
    live.Text: live.Text(text="hello \u202e"),
    live.ToolUse: live.ToolUse(id="toolu_1", name="mcp__hyperhive__send", input={"to": "bob"}),
    live.ToolResult: live.ToolResult(tool_use_id="toolu_1", content="sent", is_error=False),
    live.Note: live.Note(text="retrying"),
    live.Raw: live.Raw(line_type="mystery", data={"type": "mystery", "x": [1]}),
    live.StatusChanged: live.StatusChanged(status="busy"),
    live.ModelChanged: live.ModelChanged(model="sonnet"),
    live.TokenUsageChanged: live.TokenUsageChanged(
        context_tokens=1200, usage=live.TokenUsage(input_tokens=1000, output_tokens=7)
    ),
    live.TurnStateChanged: live.TurnStateChanged(state="tool"),
    live.StuckChanged: live.StuckChanged(signals=["repetition", "burn"]),
    # dashboard events
    events.Sent: events.Sent(message=MESSAGE),
    events.Delivered: events.Delivered(recipient="bob", ids=[1, 2], delivered_at=1.5),
    events.Leased: events.Leased(recipient="bob", ids=[3]),
    events.Released: events.Released(recipient="bob", ids=[3]),
    events.ApprovalAdded: events.ApprovalAdded(approval=APPROVAL),
    events.ApprovalStarted: events.ApprovalStarted(approval=APPROVAL),
    events.ApprovalResolved: events.ApprovalResolved(approval=APPROVAL),
    events.QuestionAdded: events.QuestionAdded(question=QUESTION),
    events.QuestionResolved: events.QuestionResolved(question=QUESTION),
    events.TransientSet: events.TransientSet(id=1, agent="alice", action="kill", actor="operator"),
    events.TransientCleared: events.TransientCleared(
        id=1, agent="alice", action="kill", outcome="done"
    ),
    events.ContainerStateChanged: events.ContainerStateChanged(agent=AGENT),
    events.ContainerRemoved: events.ContainerRemoved(name="alice"),
    events.AttentionChanged: events.AttentionChanged(items=[ATTENTION]),
    events.HostsChanged: events.HostsChanged(
        link="up",
        hosts=[HostInfo(host="beta", this=False, capacity=30, agents=1, last_seen_seconds=4.5)],
    ),
    events.RemoteInbox: events.RemoteInbox(
        host="beta",
        inbox=InboxSummary(
            unread=1,
            oldest_unread=1.5,
            recent=[Message(id=3, sender="bea", recipient="operator", body="hi", sent_at=1.5)],
        ),
    ),
    events.NotifyChanged: events.NotifyChanged(
        targets=[NotifyTarget(url="json://hook.example/x", severity="warn", failing=True)]
    ),
    events.UsageChanged: events.UsageChanged(
        agent="alice",
        usage=[
            AgentUsage(
                agent="*",
                window="7d",
                turns=1,
                input_tokens=1,
                output_tokens=1,
                cache_creation_input_tokens=0,
                cache_read_input_tokens=0,
                tokens=2,
                cost_usd=0.0,
            )
        ],
        hourly=[UsageHour(agent="alice", hour=0.0, tokens=2, cost_usd=0.0)],
    ),
    events.Resync: events.Resync(),
    # records
    Message: MESSAGE,
    Approval: APPROVAL,
    AgentInfo: AGENT,
    Question: QUESTION,
    Reminder: REMINDER,
    AttentionItem: ATTENTION,
    events.Frame: events.Frame(
        seq=41, event=events.Delivered(recipient="a", ids=[], delivered_at=0)
    ),
}

UNIONS: list[tuple[str, object, TypeAdapter[Any]]] = [
    ("request", AnyRequest, ANY_REQUEST),
    ("response", Response, RESPONSE),
    ("event", DashboardEvent, DASHBOARD_EVENT),
    ("live", live.LiveEvent, live.LIVE_EVENT),
    ("helper", helper.HelperEvent, helper.HELPER_EVENT),
]
RECORDS: list[type[WireModel]] = [Message, Approval, AgentInfo, Question, Reminder, events.Frame]

CASES = [
    pytest.param(adapter, model, id=f"{label}-{model.__name__}")
    for label, union, adapter in UNIONS
    for model in variants(union)
] + [pytest.param(TypeAdapter(model), model, id=f"record-{model.__name__}") for model in RECORDS]


@pytest.mark.parametrize(("adapter", "model"), CASES)
def test_every_variant_round_trips_through_a_json_line(
    adapter: TypeAdapter[Any], model: type[WireModel]
) -> None:
    sample = SAMPLES[model]
    assert type(sample) is model
    line = framing.encode(dump(sample))
    assert line.endswith(b"\n")
    decoded = adapter.validate_python(framing.decode(line[:-1]))
    assert type(decoded) is model
    assert decoded == sample
    assert adapter.validate_json(line) == sample


@pytest.mark.parametrize(("label", "union", "adapter"), UNIONS)
def test_the_samples_cover_every_variant_of_every_union(
    label: str, union: object, adapter: TypeAdapter[Any]
) -> None:
    members = variants(union)
    assert len(members) >= 3, label
    missing = [m.__name__ for m in members if m not in SAMPLES]
    assert missing == [], f"{label} variants without a sample: {missing}"


def test_variants_of_the_any_request_union_are_all_request_models() -> None:
    members = variants(AnyRequest)
    assert len(members) == len(ALL_VERBS)
    assert all(issubclass(m, WireModel) and "cmd" in m.model_fields for m in members)


def test_agent_socket_has_no_admin_or_manager_verbs() -> None:
    assert {"spawn", "approve", "deny", "kill", "list", "destroy", "inbox"} & AGENT_VERBS == set()
    assert {"version", "ping", "send", "recv", "ack", "alive"} <= AGENT_VERBS


def test_manager_socket_cannot_spawn_approve_deny_destroy_or_read_the_operator_inbox() -> None:
    assert {"spawn", "approve", "deny", "destroy", "inbox", "pending"} & MANAGER_VERBS == set()
    assert {"version", "ping", "send", "recv", "ack", "request_spawn", "list"} <= MANAGER_VERBS


def test_host_socket_does_not_lease_messages_or_report_liveness() -> None:
    assert {"recv", "ack", "alive"} & HOST_VERBS == set()
    assert {"version", "spawn", "approve", "deny", "destroy", "inbox", "pending"} <= HOST_VERBS


def test_harness_socket_answers_pings_and_turn_controls_only() -> None:
    expected = {"version", "ping", "cancel", "new_session", "set_model", "compact", "events"}
    expected |= {"web_code", "login_start", "login_code", "login_cancel", "login_status"}
    assert expected | {"turn_status", "hive_signals"} == HARNESS_VERBS


def test_every_verb_belongs_to_some_socket_and_every_socket_has_version() -> None:
    assert HOST_VERBS | MANAGER_VERBS | AGENT_VERBS | HARNESS_VERBS == ALL_VERBS
    for verbs in (HOST_VERBS, MANAGER_VERBS, AGENT_VERBS, HARNESS_VERBS):
        assert {"version", "ping"} <= verbs


def test_no_request_model_declares_an_identity_field() -> None:
    for model in variants(AnyRequest):
        assert IDENTITY_FIELDS & model.model_fields.keys() == set(), model.__name__


@pytest.mark.parametrize("field", sorted(IDENTITY_FIELDS))
def test_an_identity_claim_is_refused_by_every_request_model(field: str) -> None:
    for model in variants(AnyRequest):
        raw = {**dump(SAMPLES[model]), field: "hm1nd"}
        with pytest.raises(ValidationError, match="extra_forbidden"):
            ANY_REQUEST.validate_python(raw)


def test_unknown_verbs_are_refused_by_the_union() -> None:
    with pytest.raises(ValidationError):
        ANY_REQUEST.validate_python({"cmd": "shell", "argv": ["id"]})


@pytest.mark.parametrize(
    "raw",
    [
        {"cmd": "send", "to": "..", "body": "x"},
        {"cmd": "send", "to": "Alice", "body": "x"},
        {"cmd": "send", "to": "bob", "body": ""},
        {"cmd": "send", "to": "bob", "body": "x", "idempotency_key": "a b"},
        {"cmd": "spawn", "name": "operator"},
        {"cmd": "spawn", "name": "\u0430lice"},
        {"cmd": "destroy", "name": "../etc"},
        {"cmd": "recv", "wait_seconds": 181},
        {"cmd": "recv", "wait_seconds": -1},
        {"cmd": "recv", "wait_seconds": float("nan")},
        {"cmd": "recv", "max": 0},
        {"cmd": "ack", "ids": list(range(1001))},
        {"cmd": "alive", "pid": 0},
        {"cmd": "approve", "id": 0},
    ],
)
def test_invalid_request_arguments_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ANY_REQUEST.validate_python(raw)


def test_send_accepts_the_operator_as_recipient() -> None:
    sent = ANY_REQUEST.validate_python({"cmd": "send", "to": "operator", "body": "x"})
    assert isinstance(sent, requests.Send)
    assert sent.to == "operator"


def test_wire_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        MESSAGE.body = "changed"  # type: ignore[misc]


def test_a_body_is_held_to_its_size_once_json_escaped() -> None:
    from hive_share.request_fields import MAX_BODY, MAX_BODY_JSON, fits_json

    plain = "x" * MAX_BODY
    assert fits_json(plain) is plain
    wide = "é" * (MAX_BODY_JSON // 6)  # two bytes each in UTF-8: fits however it is counted
    assert fits_json(wide) is wide
    most = (MAX_BODY_JSON - 2) // 6  # six bytes each once escaped, and two quotes
    controls = "\x01" * most
    assert fits_json(controls) is controls
    with pytest.raises(ValueError, match=f"at most {MAX_BODY_JSON} allowed"):
        fits_json(controls + "\x01")
