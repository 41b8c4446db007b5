"""Coordination on the wire: questions (`ask`, `answer`, the operator's `questions` and
`cancel_question`), reminders (`remind`, `list_reminders`, `cancel_reminder`) and
`get_open_threads`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hive_share.base import BudgetWindow
from hive_share.models import AgentName, WireModel
from hive_share.request_fields import MAX_QUESTION, HostId, Id, StateFilePath


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
    host: HostId | None = None
    """Operator: the host that holds it, when it is another host's (`questions` shows it)."""


class CancelQuestion(WireModel):
    """Operator: withdraw a pending question; its asker is told."""

    cmd: Literal["cancel_question"]
    id: Id
    host: HostId | None = None
    """The host that holds it, when it is another host's."""


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


class Attention(WireModel):
    """The attention list: what waits on the operator or signals trouble, ranked (for the
    manager, without the operator's own inbox)."""

    cmd: Literal["attention"]


class Usage(WireModel):
    """Tokens and dollars spent per agent over the budget windows, with each agent's limits;
    `hourly` adds the last 24 hours hour by hour (the dashboard's chart)."""

    cmd: Literal["usage"]
    agent: AgentName | None = None
    """One agent; None for every agent."""
    window: BudgetWindow | None = None
    """One window; None for both."""
    hourly: bool = False


class NotifyStatus(WireModel):
    """Each notification URL (credentials masked): its last success and failure, its queue."""

    cmd: Literal["notify_status"]


class NotifyTest(WireModel):
    """Send a test notification to every notification URL now; each one's outcome."""

    cmd: Literal["notify_test"]


class GetOpenThreads(WireModel):
    """Loose ends: pending approvals and unanswered questions (hive-wide for the manager and
    the operator)."""

    cmd: Literal["get_open_threads"]
