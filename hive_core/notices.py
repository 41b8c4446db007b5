"""Who hears about what happened, as helper events in their inbox: a requester how its
approval ended (`tell_requester`, `announce`), an agent's overseer its news
(`tell_overseer`), and the overseer a harness's Claude Code login, once per change
(`login_state`).
"""

from __future__ import annotations

import logging

from hive_core.agent_info import publish_state
from hive_core.services import Services
from hive_share import helper
from hive_share.models import Approval, LoginReport
from hive_share.names import MANAGER_NAME, OPERATOR

logger = logging.getLogger(__name__)


async def tell_requester(s: Services, approval: Approval) -> None:
    """An agent that asked for something hears how it ended (the operator sees it directly)."""
    requester = approval.requester
    if requester == OPERATOR or not s.broker.reaches(requester):
        return
    elsewhere = not s.registry.is_recipient(requester)  # another host's agent asked
    await s.broker.notify(requester, _resolved(approval, s.settings.host_id if elsewhere else None))


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


def _resolved(approval: Approval, host: str | None = None) -> helper.ApprovalResolved:
    return helper.ApprovalResolved(
        id=approval.id, approval_kind=approval.kind, agent=approval.agent,
        status=approval.status, reason=approval.reason, host=host,
    )  # fmt: skip


async def tell_overseer(s: Services, about: str, event: helper.HelperEvent) -> None:
    """News about an agent goes to the manager; news about the manager to the operator."""
    to = (
        OPERATOR if about == MANAGER_NAME or s.registry.find(MANAGER_NAME) is None else MANAGER_NAME
    )
    await s.broker.notify(to, event)


async def login_state(
    s: Services, name: str, state: LoginReport, detail: str, expires_at: float | None = None
) -> None:
    """A harness says its Claude Code login works again, or no longer does (and, when its
    credentials say so, when it will stop working by itself).

    Its overseer hears of a change from what it was last told, which the agents table keeps:
    a harness that reports the same after a daemon restart tells nobody again.
    """
    before = s.liveness.login.get(name, "unknown")
    s.liveness.login[name] = state
    expiry_before = s.liveness.login_expires.get(name)
    if expires_at is None or state != "logged_in":
        s.liveness.login_expires.pop(name, None)
    else:
        s.liveness.login_expires[name] = expires_at
    if state != before:
        s.liveness.login_since[name] = s.clock.now()
    if state != before or s.liveness.login_expires.get(name) != expiry_before:
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
