"""The wire's request set, tagged by `cmd`: one union per socket, and each socket's verb table.

The models live by concern (message_requests.py, agent_requests.py, coordination_requests.py,
harness_requests.py, lifecycle_requests.py; their shared limits and field types in
request_fields.py); this module is the one place that lists which of them each socket takes,
and re-exports them all, so a caller names any request as `requests.<Model>`. A verb is
allowed on a socket exactly when its model is in that socket's union.
"""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field, TypeAdapter

from hive_share.agent_requests import (
    Alive,
    LoginState,
    ReportStuck,
    ReportTurnState,
    ReportTurnUsage,
    SetStatus,
    TurnSlot,
    WatchLimitsQuery,
    Whoami,
)
from hive_share.coordination_requests import (
    AnswerQuestion,
    Ask,
    Attention,
    CancelQuestion,
    CancelReminder,
    GetOpenThreads,
    ListReminders,
    NotifyStatus,
    NotifyTest,
    Questions,
    Remind,
    Usage,
)
from hive_share.harness_requests import (
    Cancel,
    Compact,
    Events,
    HarnessLog,
    HiveSignals,
    LoginCancel,
    LoginCode,
    LoginControl,
    LoginLink,
    LoginStart,
    LoginStatus,
    NewSession,
    Relay,
    SetModel,
    TurnStatus,
    WebCode,
)
from hive_share.lifecycle_requests import (
    Approve,
    Deny,
    DeployedConfig,
    Destroy,
    Hosts,
    Kill,
    List,
    Pending,
    Rebuild,
    RequestApplyCommit,
    RequestInitConfig,
    RequestSpawn,
    Restart,
    ShowApproval,
    Spawn,
    Start,
    Stop,
    Update,
)
from hive_share.message_requests import (
    Ack,
    Inbox,
    Ping,
    Recv,
    Send,
    Version,
)
from hive_share.models import WireModel
from hive_share.request_fields import (
    MAX_BODY,
    MAX_BODY_JSON,
    MAX_QUESTION,
    MAX_WAIT_SECONDS,
    RELAY_WAIT_SECONDS,
    Id,
    IdempotencyKey,
    StateFilePath,
)

__all__ = [
    "AGENT_REQUEST",
    "AGENT_VERBS",
    "ALL_VERBS",
    "ANY_REQUEST",
    "HARNESS_REQUEST",
    "HARNESS_VERBS",
    "HOST_REQUEST",
    "HOST_VERBS",
    "IDENTITY_FIELDS",
    "MANAGER_REQUEST",
    "MANAGER_VERBS",
    "MAX_BODY",
    "MAX_BODY_JSON",
    "MAX_QUESTION",
    "MAX_WAIT_SECONDS",
    "RELAY_WAIT_SECONDS",
    "Ack",
    "AgentRequest",
    "Alive",
    "AnswerQuestion",
    "AnyRequest",
    "Approve",
    "Ask",
    "Attention",
    "Cancel",
    "CancelQuestion",
    "CancelReminder",
    "Compact",
    "Deny",
    "DeployedConfig",
    "Destroy",
    "Events",
    "GetOpenThreads",
    "HarnessLog",
    "HarnessRequest",
    "HiveSignals",
    "HostRequest",
    "Hosts",
    "Id",
    "IdempotencyKey",
    "Inbox",
    "Kill",
    "List",
    "ListReminders",
    "LoginCancel",
    "LoginCode",
    "LoginControl",
    "LoginLink",
    "LoginStart",
    "LoginState",
    "LoginStatus",
    "ManagerRequest",
    "NewSession",
    "NotifyStatus",
    "NotifyTest",
    "Pending",
    "Ping",
    "Questions",
    "Rebuild",
    "Recv",
    "Relay",
    "Remind",
    "ReportStuck",
    "ReportTurnState",
    "ReportTurnUsage",
    "RequestApplyCommit",
    "RequestInitConfig",
    "RequestSpawn",
    "Restart",
    "Send",
    "SetModel",
    "SetStatus",
    "ShowApproval",
    "Spawn",
    "Start",
    "StateFilePath",
    "Stop",
    "TurnSlot",
    "TurnStatus",
    "Update",
    "Usage",
    "Version",
    "WatchLimitsQuery",
    "WebCode",
    "Whoami",
    "variants",
    "verbs_of",
]

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
    | Attention
    | Usage
    | NotifyStatus
    | NotifyTest
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
    | DeployedConfig
    | List
    | Hosts
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
    | Attention
    | Usage
    | Recv
    | Ack
    | Alive
    | SetStatus
    | Whoami
    | LoginState
    | ReportTurnState
    | ReportStuck
    | ReportTurnUsage
    | TurnSlot
    | WatchLimitsQuery
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
    | ReportTurnState
    | ReportStuck
    | ReportTurnUsage
    | TurnSlot
    | WatchLimitsQuery,
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
    | HiveSignals
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
    | Attention
    | Usage
    | NotifyStatus
    | NotifyTest
    | Recv
    | Ack
    | Alive
    | SetStatus
    | Whoami
    | LoginState
    | ReportTurnState
    | ReportStuck
    | ReportTurnUsage
    | TurnSlot
    | WatchLimitsQuery
    | Cancel
    | NewSession
    | SetModel
    | Compact
    | Events
    | TurnStatus
    | WebCode
    | HiveSignals
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
    | DeployedConfig
    | List
    | Hosts
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
