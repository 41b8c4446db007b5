"""Where a request runs when the hive spans hosts: this host, or the other host that runs
the agent it names, holds the item it decides, or is to take the spawn it places; and
the operator's items of every host together. On a hive of one host, always here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hive_core.errors import InvalidRequest, NotFound
from hive_core.federation.names import DECIDED, FORWARDED
from hive_core.services import Services
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.models import Approval, Question, WireModel

if TYPE_CHECKING:
    from hive_core.federation.service import Federation


def holder(s: Services, host: str | None) -> str | None:
    """`host` when it is another host of the hive; None for this host (or none named).

    Raises:
        InvalidRequest: a host named on a hive of one host.
        NotFound: no such host in the hive.
    """
    if host is None:
        return None
    fed = s.federation
    if fed is None:
        raise InvalidRequest("host: this hive runs on one host (no HIVE_NATS_URL)")
    if host == fed.host:
        return None
    if host not in fed.view.hosts:
        raise NotFound(f"no host {host!r} in the hive; `hive-core hosts` lists them")
    return host


def placed(s: Services, host: str | None) -> str | None:
    """The other host a spawn goes to: `host`, or (none named) the one with the most free
    places; None for this host. Raises: see `holder`."""
    if host is None and s.federation is not None:
        host = s.federation.place()
    return holder(s, host)


def elsewhere(s: Services, req: rq.HostRequest) -> str | None:
    """The host that runs the agent `req` acts on, or holds the approval or question it
    decides, when that is another host. Raises: see `holder`."""
    if req.cmd in DECIDED:
        return holder(s, getattr(req, "host", None))
    if req.cmd not in FORWARDED:
        return None
    name = getattr(req, "name", None)
    fed = runs_elsewhere(s, name) if isinstance(name, str) else None
    return None if fed is None else fed.host_of(str(name))


def runs_elsewhere(s: Services, name: str) -> Federation | None:
    """The federation, when agent `name` runs on another host (not on this one)."""
    fed = s.federation
    if fed is None or s.registry.find(name) is not None or fed.host_of(name) is None:
        return None
    return fed


def stamped(answer: WireModel, host: str | None) -> WireModel:
    """Another host's answer with an approval (its id that host's) named as that host's."""
    if isinstance(answer, rs.ApprovalResult):
        return rs.ApprovalResult(approval=answer.approval.model_copy(update={"host": host}))
    return answer


async def hive_approvals(s: Services) -> list[Approval]:
    """The approvals that have not ended; in a hive across hosts, every host's, each with
    its host."""
    mine = await s.approvals.pending()
    if s.federation is None:
        return mine
    here = {"host": s.federation.host}
    return [*(a.model_copy(update=here) for a in mine), *s.federation.items.remote_approvals()]


async def hive_questions(s: Services) -> list[Question]:
    """The operator's open questions; in a hive across hosts, every host's, each with its
    host."""
    mine = await s.questions.pending(operator_only=True)
    if s.federation is None:
        return mine
    here = {"host": s.federation.host}
    return [*(q.model_copy(update=here) for q in mine), *s.federation.items.remote_questions()]
