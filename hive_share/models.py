"""Records that travel inside responses: messages, approvals, agents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from hive_share.base import (
    AgentName,
    AgentState,
    ApprovalKind,
    ApprovalStatus,
    LoginStatus,
    Principal,
    Role,
    WireModel,
)
from hive_share.helper import HelperEvent

__all__ = [
    "AgentInfo",
    "AgentName",
    "AgentState",
    "Approval",
    "ApprovalKind",
    "ApprovalStatus",
    "LoginStatus",
    "Message",
    "Principal",
    "Role",
    "WireModel",
    "dump",
]


class Message(WireModel):
    """One broker message. `sender` is stamped by hive-core from the socket."""

    id: int
    sender: str
    recipient: str
    body: str
    sent_at: float
    delivered_at: float | None = None
    event: HelperEvent | None = None
    """Set on helper events (sender `hive`); `body` then holds a one-line summary."""


class Approval(WireModel):
    """One entry of the approval queue."""

    id: int
    kind: ApprovalKind
    agent: str
    requester: str
    status: ApprovalStatus
    created_at: float
    resolved_at: float | None = None
    reason: str | None = None


class AgentInfo(WireModel):
    """One row of `list`: a live agent or a tombstone."""

    name: str
    role: Role
    state: AgentState
    pid: int | None = None
    uptime_seconds: float | None = None
    web_port: int | None = None
    alive: bool = False
    status: str = ""
    """The agent's own one-line status (`set_status`)."""
    login: LoginStatus = "unknown"


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as a JSON-ready dict (the one serialisation path)."""
    return model.model_dump(mode="json")


