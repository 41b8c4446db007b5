"""Helper events: what hive-core tells an agent about itself or the hive, through its inbox.

They arrive like messages, from the sender `hive`, with the event attached.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from hive_share.base import ApprovalKind, ApprovalStatus, WireModel

HIVE_SENDER = "hive"
"""The sender of helper events; a reserved name no agent can take."""


class ContainerCrash(WireModel):
    """An agent's harness died without an operator asking for it."""

    kind: Literal["container_crash"] = "container_crash"
    agent: str
    detail: str
    restart_in_seconds: float | None = None
    """When hive-core will restart it; None when it gave up."""


class NeedsLogin(WireModel):
    kind: Literal["needs_login"] = "needs_login"
    agent: str
    detail: str = ""


class LoggedIn(WireModel):
    kind: Literal["logged_in"] = "logged_in"
    agent: str


class ApprovalResolved(WireModel):
    """A request of yours was approved, denied, or failed when carried out."""

    kind: Literal["approval_resolved"] = "approval_resolved"
    id: int
    approval_kind: ApprovalKind
    agent: str
    status: ApprovalStatus
    reason: str | None = None


HelperEvent = Annotated[
    ContainerCrash | NeedsLogin | LoggedIn | ApprovalResolved, Field(discriminator="kind")
]
HELPER_EVENT: TypeAdapter[HelperEvent] = TypeAdapter(HelperEvent)


def summary(event: HelperEvent) -> str:
    """One line for the message body; the structured event travels alongside."""
    match event:
        case ContainerCrash(agent=agent, restart_in_seconds=delay):
            then = f"restarting in {delay:.0f}s" if delay is not None else "not restarting"
            return f"{agent} crashed; {then}"
        case NeedsLogin(agent=agent):
            return f"{agent} needs a Claude Code login"
        case LoggedIn(agent=agent):
            return f"{agent} is logged in again"
        case ApprovalResolved(id=approval_id, approval_kind=kind, agent=agent, status=status):
            return f"approval {approval_id} ({kind} {agent}) was {status}"
