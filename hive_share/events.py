"""Dashboard events published by hive-core, tagged by `kind`, framed with a `seq`."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, TypeAdapter

from hive_share.models import (
    AgentInfo,
    AgentUsage,
    Approval,
    AttentionItem,
    HostInfo,
    InboxSummary,
    LinkState,
    Message,
    NotifyTarget,
    Question,
    UsageHour,
    WireModel,
)


class Sent(WireModel):
    kind: Literal["sent"] = "sent"
    message: Message


class Delivered(WireModel):
    kind: Literal["delivered"] = "delivered"
    recipient: str
    ids: list[int]
    delivered_at: float


class Leased(WireModel):
    """Messages handed to a `recv`, not yet acknowledged."""

    kind: Literal["leased"] = "leased"
    recipient: str
    ids: list[int]


class Released(WireModel):
    """Leased messages whose receiver hung up unacknowledged: queued again."""

    kind: Literal["released"] = "released"
    recipient: str
    ids: list[int]


class ApprovalAdded(WireModel):
    kind: Literal["approval_added"] = "approval_added"
    approval: Approval


class ApprovalStarted(WireModel):
    """The operator approved it and it is being carried out (status `in_progress`)."""

    kind: Literal["approval_started"] = "approval_started"
    approval: Approval


class ApprovalResolved(WireModel):
    kind: Literal["approval_resolved"] = "approval_resolved"
    approval: Approval


class TransientSet(WireModel):
    """An operator-initiated transition began (kill, stop, restart, ...)."""

    kind: Literal["transient_set"] = "transient_set"
    id: int
    agent: str
    action: str
    actor: str


class TransientCleared(WireModel):
    kind: Literal["transient_cleared"] = "transient_cleared"
    id: int
    agent: str
    action: str
    outcome: str


class RemoteInbox(WireModel):
    """Another host's operator inbox changed: its summary as that host published it."""

    kind: Literal["remote_inbox"] = "remote_inbox"
    host: str
    inbox: InboxSummary


class QuestionAdded(WireModel):
    kind: Literal["question_added"] = "question_added"
    question: Question


class QuestionResolved(WireModel):
    kind: Literal["question_resolved"] = "question_resolved"
    question: Question


class ContainerStateChanged(WireModel):
    kind: Literal["container_state_changed"] = "container_state_changed"
    agent: AgentInfo


class ContainerRemoved(WireModel):
    kind: Literal["container_removed"] = "container_removed"
    name: str


class AttentionChanged(WireModel):
    """The attention list changed: here it is whole, ranked (it is short)."""

    kind: Literal["attention_changed"] = "attention_changed"
    items: list[AttentionItem]


class UsageChanged(WireModel):
    """An agent's turn was counted: its spend per window, the hive's (agent `*`), and its
    last 24 hours hour by hour (the dashboard's usage panel)."""

    kind: Literal["usage_changed"] = "usage_changed"
    agent: str
    usage: list[AgentUsage]
    hourly: list[UsageHour]


class NotifyChanged(WireModel):
    """A notification URL started failing, or works again: every URL's status (masked)."""

    kind: Literal["notify_changed"] = "notify_changed"
    targets: list[NotifyTarget]


class HostsChanged(WireModel):
    """A hive that spans hosts: this host's NATS link changed, or another host's heartbeat
    came (every 10 s). `hosts` is every host this one knows, itself first, as `hosts`
    answers (`last_seen_seconds` as of the event)."""

    kind: Literal["hosts_changed"] = "hosts_changed"
    link: LinkState
    hosts: list[HostInfo]


class Resync(WireModel):
    """The subscriber fell behind and was cut off; refetch the snapshot."""

    kind: Literal["resync"] = "resync"


DashboardEvent = Annotated[
    Sent
    | Leased
    | Released
    | Delivered
    | ApprovalAdded
    | ApprovalStarted
    | ApprovalResolved
    | QuestionAdded
    | QuestionResolved
    | TransientSet
    | TransientCleared
    | ContainerStateChanged
    | UsageChanged
    | NotifyChanged
    | ContainerRemoved
    | AttentionChanged
    | HostsChanged
    | RemoteInbox
    | Resync,
    Field(discriminator="kind"),
]
DASHBOARD_EVENT: TypeAdapter[DashboardEvent] = TypeAdapter(DashboardEvent)
DASHBOARD_EVENT_KINDS = frozenset(
    model.model_fields["kind"].default for model in get_args(get_args(DashboardEvent)[0])
)
"""Every `kind` on the stream: what `/dashboard/stream?kinds=` may name."""


class Frame(WireModel):
    """One event on the stream with its monotonic sequence number."""

    seq: int
    event: DashboardEvent
