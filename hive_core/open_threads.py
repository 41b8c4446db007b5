"""Loose ends: pending approvals and unanswered questions, per agent or hive-wide."""

from __future__ import annotations

from hive_core.services import Services
from hive_share import responses as rs


async def for_agent(s: Services, agent: str) -> rs.OpenThreads:
    """What `agent` is waiting on or owes: its pending requests, questions asked by it or
    waiting for its answer, and how many of its reminders are pending."""
    approvals = [a for a in await s.approvals.pending() if a.requester == agent]
    return rs.OpenThreads(
        approvals=approvals,
        questions=await s.questions.open_for(agent),
        pending_reminders=await s.reminders.pending_count(agent),
    )


async def hive_wide(s: Services) -> rs.OpenThreads:
    """Every pending approval and unanswered question in the hive (manager and operator)."""
    return rs.OpenThreads(
        approvals=await s.approvals.pending(),
        questions=await s.questions.pending(),
        pending_reminders=await s.reminders.pending_total(),
    )
