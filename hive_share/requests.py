"""Socket requests, tagged by `cmd`, and the verb table of each socket."""

from __future__ import annotations

import json
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Field, TypeAdapter

from hive_share.framing import INT64_MAX
from hive_share.live import TurnState
from hive_share.models import AgentName, LoginReport, ModelSource, Principal, WireModel

MAX_BODY = 256 * 1024
"""Most characters in a message body."""
MAX_BODY_JSON = 512 * 1024
"""Most bytes a body may take once JSON-escaped, so any one message fits in a 1 MiB line."""
MAX_WAIT_SECONDS = 180.0
Id = Annotated[int, Field(gt=0, le=INT64_MAX)]
"""A row id: positive and within SQLite's 64-bit integers."""
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


def _fits(body: str) -> str:
    size = len(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    if size > MAX_BODY_JSON:
        raise ValueError(f"body takes {size} bytes as JSON; at most {MAX_BODY_JSON} allowed")
    return body


class Version(WireModel):
    """Protocol version of the socket's server."""

    cmd: Literal["version"]


class Ping(WireModel):
    """Liveness probe; answered with `pong`."""

    cmd: Literal["ping"]


class Send(WireModel):
    """Queue a message. The sender is the socket's principal, never a field."""

    cmd: Literal["send"]
    to: Principal
    body: Annotated[str, Field(min_length=1, max_length=MAX_BODY), AfterValidator(_fits)]
    idempotency_key: IdempotencyKey | None = None


class Recv(WireModel):
    """Lease undelivered messages to this connection; long-polls up to `wait_seconds`."""

    cmd: Literal["recv"]
    wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0.0
    max: Annotated[int, Field(ge=1, le=1000)] = 100
    ack: Annotated[list[Id], Field(max_length=1000)] = Field(default_factory=list)
    """Ids leased to this connection to mark delivered first, as `ack` would: committed
    before anything is leased or waited for; one foreign id fails the whole `recv`."""


class Ack(WireModel):
    """Mark leased messages delivered; only after this are they gone from the inbox."""

    cmd: Literal["ack"]
    ids: Annotated[list[Id], Field(max_length=1000)]


class Alive(WireModel):
    """The harness reports itself up, with its pid."""

    cmd: Literal["alive"]
    pid: Annotated[int, Field(gt=0, le=2**31 - 1)]
    version: Annotated[str, Field(max_length=64)] | None = None
    """The harness's package version; one that differs from hive-core's needs a rebuild."""
    model: Annotated[str, Field(max_length=100)] | None = None
    """The model its next turn will run."""
    model_source: ModelSource | None = None
    """Where that model comes from (`set_model`, agent.toml, or the default)."""
    problems: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=20
    )
    """What its start check found wrong: agent.toml, the model, an extra MCP server that
    did not answer `initialize`. A deploy whose harness reports any is rolled back."""


class SetStatus(WireModel):
    """The agent's one-line status, shown to the operator."""

    cmd: Literal["set_status"]
    status: Annotated[str, Field(max_length=200)]


class Whoami(WireModel):
    """Who this socket's principal is."""

    cmd: Literal["whoami"]


class LoginState(WireModel):
    """The harness reports whether its Claude Code login works."""

    cmd: Literal["login_state"]
    state: LoginReport
    detail: Annotated[str, Field(max_length=1000)] = ""


class ReportTurnState(WireModel):
    """The harness reports its turn state when it changes (the dashboard's turn chip), and
    its model and where that comes from when they change (a `set_model`, from any
    surface)."""

    cmd: Literal["turn_state"]
    state: TurnState
    model: Annotated[str, Field(max_length=100)] | None = None
    model_source: ModelSource | None = None


class Cancel(WireModel):
    """Harness socket: interrupt the running turn."""

    cmd: Literal["cancel"]


class NewSession(WireModel):
    """Harness socket: run the next turn without `--continue`."""

    cmd: Literal["new_session"]


class SetModel(WireModel):
    """Harness socket: switch the model from the next turn on (persisted)."""

    cmd: Literal["set_model"]
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:\[\]-]{1,100}$")]


class Compact(WireModel):
    """Harness socket: compact the session (`/compact`) before the next turn's prompt."""

    cmd: Literal["compact"]


RELAY_WAIT_SECONDS = 8.0
"""The longest wait a relayed long-poll may ask for (the relay itself allows 10 s)."""


class Events(WireModel):
    """Harness socket: its turn events above `after`, oldest first; with `wait_seconds`,
    wait for one (what `hive-core logs` reads and follows)."""

    cmd: Literal["events"]
    after: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    """Only events with a `seq` above this; 0 with `limit` gives the newest `limit`."""
    limit: Annotated[int, Field(ge=1, le=1000)] = 200
    wait_seconds: Annotated[float, Field(ge=0, le=RELAY_WAIT_SECONDS)] = 0.0


class HarnessLog(WireModel):
    """Host socket: an agent's harness log: the last `lines` lines, or, with `offset`,
    what was appended past it (what `hive-core logs --raw [-f]` reads)."""

    cmd: Literal["harness_log"]
    name: AgentName
    lines: Annotated[int, Field(ge=1, le=2000)] = 200
    offset: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None


class LoginStart(WireModel):
    """Harness socket: run `claude auth login` and relay it (one session at a time)."""

    cmd: Literal["login_start"]


class LoginCode(WireModel):
    """Harness socket: the code the operator pasted, written to the login's stdin (never
    stored or logged)."""

    cmd: Literal["login_code"]
    code: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\r\n]+$")]


class LoginCancel(WireModel):
    """Harness socket: end the login session."""

    cmd: Literal["login_cancel"]


class LoginStatus(WireModel):
    """Harness socket: the login session's state and its output past `after` (characters);
    with `wait_seconds`, wait for more or for the end."""

    cmd: Literal["login_status"]
    after: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    wait_seconds: Annotated[float, Field(ge=0, le=RELAY_WAIT_SECONDS)] = 0.0


LoginControl = LoginStart | LoginCode | LoginCancel | LoginStatus


class WebCode(WireModel):
    """Harness socket: accept `code` once, within 10 minutes, as a login to the agent page
    (hive-core mints it for `login_link` with a name), with a send token for the page."""

    cmd: Literal["web_code"]
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{32,64}$")]
    send_token: Annotated[str, Field(pattern=r"^s1\.[a-z0-9.-]{1,190}$")] | None = None
    """The dashboard's send token for this agent: the page sends the operator's messages
    to it with this (none when the dashboard is off)."""


class Relay(WireModel):
    """Host socket: hand a turn control to an agent's harness (the CLI's and the
    dashboard's cancel, new session, model)."""

    cmd: Literal["relay"]
    name: AgentName
    request: Annotated[
        Cancel | NewSession | SetModel | Compact | Events | LoginControl,
        Field(discriminator="cmd"),
    ]


class TurnStatus(WireModel):
    """Harness socket: turn state and counters, once `turns_run >= after_turns` (long-poll)."""

    cmd: Literal["turn_status"]
    after_turns: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    until_state: TurnState | None = None
    """Also wait until the turn state is this one."""
    wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0.0


class LoginLink(WireModel):
    """A fresh one-time login link (operator only): the dashboard's, or with `name` that
    agent's page."""

    cmd: Literal["login_link"]
    name: AgentName | None = None


MAX_QUESTION = 8 * 1024
StateFilePath = Annotated[str, Field(min_length=8, max_length=1024, pattern=r"^/state/[^\x00]+$")]


class Ask(WireModel):
    """Ask the operator (no `to`) or an agent a question; the answer comes back as an event."""

    cmd: Literal["ask"]
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION)]
    to: AgentName | None = None
    options: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=200)]],
            Field(min_length=2, max_length=20),
        ]
        | None
    ) = None
    ttl_seconds: Annotated[float, Field(ge=1, le=7 * 24 * 3600)] | None = None


class AnswerQuestion(WireModel):
    """Answer a question addressed to you (the operator may answer any)."""

    cmd: Literal["answer"]
    id: Id
    answer: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION)]


class CancelQuestion(WireModel):
    """Operator: withdraw a pending question; its asker is told."""

    cmd: Literal["cancel_question"]
    id: Id


class Questions(WireModel):
    """Operator: the pending questions addressed to the operator."""

    cmd: Literal["questions"]


class Remind(WireModel):
    """Set a reminder: at a time (`at`, epoch seconds) or after `in_seconds`; optionally with
    a file under /state whose content is read when it fires."""

    cmd: Literal["remind"]
    message: Annotated[str, Field(min_length=1, max_length=4096)]
    at: Annotated[float, Field(gt=0)] | None = None
    in_seconds: Annotated[float, Field(ge=0, le=366 * 24 * 3600)] | None = None
    file_path: StateFilePath | None = None


class ListReminders(WireModel):
    """Your reminders (pending, and the last delivered); with `id`, that one in full.
    On the host socket, `agent` narrows the hive-wide list."""

    cmd: Literal["list_reminders"]
    id: Id | None = None
    agent: AgentName | None = None


class CancelReminder(WireModel):
    """Cancel a pending reminder of yours."""

    cmd: Literal["cancel_reminder"]
    id: Id


class GetOpenThreads(WireModel):
    """Loose ends: pending approvals and unanswered questions (hive-wide for the manager and
    the operator)."""

    cmd: Literal["get_open_threads"]


class Spawn(WireModel):
    """Create and start an agent (operator only)."""

    cmd: Literal["spawn"]
    name: AgentName


class RequestSpawn(WireModel):
    """Queue a spawn for the operator's approval."""

    cmd: Literal["request_spawn"]
    name: AgentName


class RequestInitConfig(WireModel):
    """Manager socket: seed an agent's config repos (it need not exist yet), so its
    config can be prepared before its spawn is requested."""

    cmd: Literal["request_init_config"]
    name: AgentName


class RequestApplyCommit(WireModel):
    """Manager socket: propose a commit of `agent`'s proposed repo for deployment."""

    cmd: Literal["request_apply_commit"]
    agent: AgentName
    commit: Annotated[str, Field(pattern=r"^([0-9a-f]{40}|[0-9a-f]{64})$")]
    """The full commit id (`git rev-parse HEAD` in the working copy)."""


class Update(WireModel):
    """Queue an approval that rebuilds every agent whose harness runs another version."""

    cmd: Literal["update"]


class ShowApproval(WireModel):
    """One approval whole, pending or resolved, with its diff."""

    cmd: Literal["show_approval"]
    id: Id


class Approve(WireModel):
    """Approve a pending approval by id."""

    cmd: Literal["approve"]
    id: Id


class Deny(WireModel):
    """Deny a pending approval by id, with a reason the requester will see."""

    cmd: Literal["deny"]
    id: Id
    reason: Annotated[str, Field(max_length=4096)] = ""


class Start(WireModel):
    cmd: Literal["start"]
    name: AgentName


class Stop(WireModel):
    cmd: Literal["stop"]
    name: AgentName


class Kill(WireModel):
    cmd: Literal["kill"]
    name: AgentName


class Restart(WireModel):
    cmd: Literal["restart"]
    name: AgentName


class Rebuild(WireModel):
    cmd: Literal["rebuild"]
    name: AgentName


class Destroy(WireModel):
    """Stop and remove an agent, leaving a tombstone; `purge` removes the tombstone too."""

    cmd: Literal["destroy"]
    name: AgentName
    purge: bool = False


class List(WireModel):
    """Agents (and, on the host socket, tombstones)."""

    cmd: Literal["list"]


class Pending(WireModel):
    """Pending approvals."""

    cmd: Literal["pending"]


class Inbox(WireModel):
    """The operator's messages, newest last; unread ones are marked delivered."""

    cmd: Literal["inbox"]
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0.0
    before: Id | None = None
    """Page back: only messages with an id below this one."""
    after: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None
    """Follow: only messages with an id above this one (0: all), oldest first; a wait lasts
    until there is one."""


HostRequest = Annotated[
    Version
    | Ping
    | Relay
    | HarnessLog
    | Send
    | AnswerQuestion
    | CancelQuestion
    | Questions
    | ListReminders
    | GetOpenThreads
    | LoginLink
    | Spawn
    | RequestSpawn
    | ShowApproval
    | Update
    | Approve
    | Deny
    | Start
    | Stop
    | Kill
    | Restart
    | Rebuild
    | Destroy
    | List
    | Pending
    | Inbox,
    Field(discriminator="cmd"),
]
ManagerRequest = Annotated[
    Version
    | Ping
    | Send
    | Ask
    | AnswerQuestion
    | Remind
    | ListReminders
    | CancelReminder
    | GetOpenThreads
    | Recv
    | Ack
    | Alive
    | SetStatus
    | Whoami
    | LoginState
    | ReportTurnState
    | RequestSpawn
    | RequestInitConfig
    | RequestApplyCommit
    | Update
    | Start
    | Kill
    | Restart
    | Rebuild
    | List,
    Field(discriminator="cmd"),
]
AgentRequest = Annotated[
    Version
    | Ping
    | Send
    | Ask
    | AnswerQuestion
    | Remind
    | ListReminders
    | CancelReminder
    | GetOpenThreads
    | Recv
    | Ack
    | Alive
    | SetStatus
    | Whoami
    | LoginState
    | ReportTurnState,
    Field(discriminator="cmd"),
]
HarnessRequest = Annotated[
    Version
    | Ping
    | Cancel
    | NewSession
    | SetModel
    | Compact
    | Events
    | TurnStatus
    | WebCode
    | LoginControl,
    Field(discriminator="cmd"),
]
AnyRequest = Annotated[
    Version
    | Ping
    | Send
    | Ask
    | AnswerQuestion
    | CancelQuestion
    | Questions
    | Remind
    | ListReminders
    | CancelReminder
    | GetOpenThreads
    | Recv
    | Ack
    | Alive
    | SetStatus
    | Whoami
    | LoginState
    | ReportTurnState
    | Cancel
    | NewSession
    | SetModel
    | Compact
    | Events
    | TurnStatus
    | WebCode
    | LoginStart
    | LoginCode
    | LoginCancel
    | LoginStatus
    | Relay
    | HarnessLog
    | LoginLink
    | Spawn
    | RequestSpawn
    | RequestInitConfig
    | RequestApplyCommit
    | ShowApproval
    | Update
    | Approve
    | Deny
    | Start
    | Stop
    | Kill
    | Restart
    | Rebuild
    | Destroy
    | List
    | Pending
    | Inbox,
    Field(discriminator="cmd"),
]

HOST_REQUEST: TypeAdapter[HostRequest] = TypeAdapter(HostRequest)
MANAGER_REQUEST: TypeAdapter[ManagerRequest] = TypeAdapter(ManagerRequest)
AGENT_REQUEST: TypeAdapter[AgentRequest] = TypeAdapter(AgentRequest)
HARNESS_REQUEST: TypeAdapter[HarnessRequest] = TypeAdapter(HarnessRequest)
ANY_REQUEST: TypeAdapter[AnyRequest] = TypeAdapter(AnyRequest)


def variants(union: object) -> tuple[type[WireModel], ...]:
    """The request models of an `Annotated[A | B | ..., discriminator]` union."""
    inner = get_args(union)[0]
    return tuple(get_args(inner))


def verbs_of(union: object) -> frozenset[str]:
    """The `cmd` tags a request union accepts: that socket's verb table."""
    return frozenset(get_args(model.model_fields["cmd"].annotation)[0] for model in variants(union))


HOST_VERBS = verbs_of(HostRequest)
MANAGER_VERBS = verbs_of(ManagerRequest)
AGENT_VERBS = verbs_of(AgentRequest)
HARNESS_VERBS = verbs_of(HarnessRequest)
ALL_VERBS = verbs_of(AnyRequest)

IDENTITY_FIELDS = frozenset(
    {
        "from",
        "sender",
        "from_agent",
        "as",
        "as_agent",
        "principal",
        "caller",
        "identity",
        "on_behalf_of",
        "requester",
        "actor",
        "user",
    }
)
"""Payload fields that would claim who is asking; refused on every socket."""
