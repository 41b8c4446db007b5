"""The names a hive uses on NATS, and what travels under them (no NATS import here).

Subjects carry the hive's id and host ids as single tokens (`HIVE_HIVE_ID`,
`HIVE_HOST_ID`: a-z, 0-9, `-`). A message for host B from host A is published on
`hive.<hive>.msg.<B>.<A>`: the last token is the origin, which NATS permissions let only A
publish, and which B checks against the payload's `origin`.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field

from hive_share.base import AgentName, AgentState, Principal, Role, WireModel
from hive_share.helper import HelperEvent
from hive_share.models import Approval, InboxSummary, Question
from hive_share.request_fields import MAX_BODY, Id

HostId = str
FORWARDED = frozenset(
    {
        "start", "stop", "kill", "restart", "rebuild", "destroy", "relay", "harness_log",
        "login_link", "deployed_config",
    }
)  # fmt: skip
"""The operator's verbs on one agent that run on its host when it is another host's: the
lifecycle, its harness's controls and events (`relay`: cancel, new session, model, logs),
its harness log, a login link to its page, and its deployed config."""
DECIDED = frozenset({"show_approval", "approve", "deny", "answer", "cancel_question", "inbox"})
"""The operator's verbs on what a host holds (an approval, a question, its operator inbox)
that run on that host when the request names another host (`host`)."""
ItemKind = Literal["approval", "question", "inbox"]


def msg_stream(hive: str) -> str:
    return f"HIVE_{hive}_MSG"


def msg_subject(hive: str, dest: str, origin: str) -> str:
    return f"hive.{hive}.msg.{dest}.{origin}"


def msg_filter(hive: str, dest: str) -> str:
    """Every message for `dest`, whoever sent it."""
    return f"hive.{hive}.msg.{dest}.*"


def msg_consumer(dest: str) -> str:
    """The durable consumer `dest` reads its messages with."""
    return f"msg-{dest}"


def rpc_subject(hive: str, dest: str, origin: str) -> str:
    """A request from host `origin` to run on host `dest` (core NATS request/reply)."""
    return f"hive.{hive}.rpc.{dest}.{origin}"


def rpc_filter(hive: str, dest: str) -> str:
    return f"hive.{hive}.rpc.{dest}.*"


def events_stream(hive: str) -> str:
    """The operator's open items of every host: the last state of each, one per subject."""
    return f"HIVE_{hive}_EVENTS"


def events_subject(hive: str, host: str, kind: ItemKind, item_id: int) -> str:
    """Where host `host` publishes the state of one of its approvals or questions."""
    return f"hive.{hive}.events.{host}.{kind}.{item_id}"


def events_filter(hive: str) -> str:
    return f"hive.{hive}.events.>"


def config_bucket(hive: str) -> str:
    """The object store carrying config repos between hosts as git bundles: `<host>/<agent>`
    (an agent's deployed config, from its host) and `<host>/proposals/<nonce>` (a commit
    another host's manager proposes). Every host may write any object, so none is taken on
    its own word: a reader takes one only when its digest is the one its host named on a
    subject only that host may publish on (its directory entry, or its request)."""
    return f"hive-{hive}-config"


def config_object(host: str, agent: str) -> str:
    """The name of `agent`'s deployed config, as its host `host` publishes it."""
    return f"{host}/{agent}"


COMMIT_ID = r"^([0-9a-f]{40}|[0-9a-f]{64})$"
"""A full git commit id (SHA-1 or SHA-256)."""
PROPOSAL_OBJECT = re.compile(r"^(?P<host>[a-z0-9-]{1,32})/proposals/[0-9a-f]{32}$")
"""The name of a proposed commit's bundle: the proposing host's id first."""
PROPOSAL_REF = re.compile(r"^refs/proposals/[0-9a-f]{32}$")
"""The one ref a proposal's bundle holds."""


def names_bucket(hive: str) -> str:
    """Agent name → the host that holds it (claimed with a create: one host wins)."""
    return f"hive-{hive}-names"


def agents_bucket(hive: str) -> str:
    """`<host>.<name>` → that agent's entry, written only by its host."""
    return f"hive-{hive}-agents"


def hosts_bucket(hive: str) -> str:
    """`<host>` → that host's heartbeat entry, written only by it."""
    return f"hive-{hive}-hosts"


def page_on(dashboard_url: str | None, link: str) -> str:
    """A link another host made to one of its agents' pages (on its loopback), on the name
    that host's dashboard is reached by (its public URL when set), the page's port kept."""
    if not dashboard_url:
        return link
    name = urlsplit(dashboard_url).hostname
    parts = urlsplit(link)
    if not name or parts.port is None:
        return link
    host = f"[{name}]" if ":" in name else name
    return parts._replace(netloc=f"{host}:{parts.port}").geturl()


def forward_key(origin: str, message_id: int) -> str:
    """The idempotency key a forwarded message is committed with on its destination, and
    its `Nats-Msg-Id` on the stream."""
    return f"host:{origin}:{message_id}"


def permissions(hive: str, host: str) -> tuple[list[str], list[str]]:
    """The subjects host `host`'s NATS user must be allowed to publish and to subscribe to,
    and no more: its own messages' and requests' origin, its own directory keys and open
    items, its own consumer (whose filter the create subject names, so it cannot read another host's
    messages), the hive's buckets to read, the config store (`config_bucket`), the requests
    for it, and replies on its own inbox prefix."""
    stream = msg_stream(hive)
    consumer = msg_consumer(host)
    ev = events_stream(hive)
    obj = f"OBJ_{config_bucket(hive)}"
    publish = [
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{msg_filter(hive, host)}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
        f"$JS.API.STREAM.INFO.{ev}",
        f"$JS.API.STREAM.CREATE.{ev}",
        f"$JS.API.CONSUMER.CREATE.{ev}",
        f"$JS.API.CONSUMER.INFO.{ev}.>",
        f"$JS.API.CONSUMER.DELETE.{ev}.>",
        f"$JS.FC.{ev}.>",
    ]
    for bucket in (names_bucket(hive), agents_bucket(hive), hosts_bucket(hive)):
        kv = f"KV_{bucket}"  # a bucket's stream; wildcards match whole tokens only
        publish += [
            f"$JS.API.STREAM.INFO.{kv}",
            f"$JS.API.STREAM.CREATE.{kv}",
            f"$JS.API.CONSUMER.CREATE.{kv}",
            f"$JS.API.CONSUMER.CREATE.{kv}.>",
            f"$JS.API.CONSUMER.INFO.{kv}.>",
            f"$JS.API.CONSUMER.DELETE.{kv}.>",
            f"$JS.API.DIRECT.GET.{kv}.>",
            f"$JS.API.STREAM.MSG.GET.{kv}",
            f"$JS.FC.{kv}.>",
        ]
    publish += [
        "$JS.API.STREAM.NAMES",  # the client finds an object's stream by its subject
        f"$JS.API.STREAM.INFO.{obj}",
        f"$JS.API.STREAM.CREATE.{obj}",
        f"$JS.API.STREAM.PURGE.{obj}",  # an object's old chunks, once replaced
        f"$JS.API.STREAM.MSG.GET.{obj}",
        f"$JS.API.DIRECT.GET.{obj}.>",
        f"$JS.API.CONSUMER.CREATE.{obj}",
        f"$JS.API.CONSUMER.CREATE.{obj}.>",
        f"$JS.API.CONSUMER.INFO.{obj}.>",
        f"$JS.API.CONSUMER.DELETE.{obj}.>",
        f"$JS.FC.{obj}.>",
        f"$O.{config_bucket(hive)}.>",
        f"$KV.{names_bucket(hive)}.>",
        f"$KV.{agents_bucket(hive)}.{host}.>",
        f"$KV.{hosts_bucket(hive)}.{host}",
        msg_subject(hive, "*", host),
        rpc_subject(hive, "*", host),
        f"hive.{hive}.events.{host}.>",
    ]
    return publish, [f"{inbox_prefix(host)}.>", rpc_filter(hive, host)]


def inbox_prefix(host: str) -> str:
    """Where this host's replies come: a prefix of its own, so no other host may read them."""
    return f"_INBOX_{host}"


class Forwarded(WireModel):
    """One message on its way from the sender's host to the recipient's."""

    v: Literal[1] = 1
    origin: str = Field(min_length=1, max_length=32)
    """The sender's host; must match the subject's last token."""
    id: Id
    """The message's id on its origin host."""
    sender: Principal | Literal["hive"]
    """An agent of the origin, its operator, or its hive-core (`hive`, with `event`)."""
    recipient: AgentName
    body: str = Field(max_length=MAX_BODY)
    sent_at: float
    event: HelperEvent | None = None
    """A helper event the origin's hive-core sent (sender `hive`): how an approval of the
    recipient's ended, say."""


class ProposedCommit(WireModel):
    """A config commit the asking host's manager proposes for an agent of the host asked
    (`request_apply_commit` as a request between hosts): the bundle holding it in the
    config store, and the bundle's digest."""

    cmd: Literal["request_apply_commit"] = "request_apply_commit"
    host: str = Field(min_length=1, max_length=32)
    """The agent's host: the one asked."""
    agent: AgentName
    commit: str = Field(pattern=COMMIT_ID)
    requester: Principal
    bundle: str = Field(pattern=PROPOSAL_OBJECT.pattern)
    ref: str = Field(pattern=PROPOSAL_REF.pattern)
    """The one ref in the bundle."""
    digest: str = Field(min_length=1, max_length=100)


class ConfigRef(WireModel):
    """An agent's deployed config as its host shared it: the commit `applied/main` is at,
    and the digest of the bundle of it in the config store."""

    commit: str = Field(pattern=COMMIT_ID)
    digest: str = Field(min_length=1, max_length=100)
    """The object store's `SHA-256=<base64>` of the bundle."""


class AgentEntry(WireModel):
    """One agent as the hive's directory holds it (key `<host>.<name>`)."""

    v: Literal[1] = 1
    name: AgentName
    host: str = Field(min_length=1, max_length=32)
    role: Role
    state: AgentState
    web_port: int | None = Field(default=None, ge=1, le=65535)
    """Its page's port on its host (the host's `dashboard_url` names the host)."""
    config: ConfigRef | None = None
    """Its deployed config in the config store; None until its host shared it."""


class HostEntry(WireModel):
    """One host's heartbeat (key `<host>`)."""

    v: Literal[1] = 1
    host: str = Field(min_length=1, max_length=32)
    dashboard_url: str | None = Field(default=None, max_length=2048)
    capacity: int = Field(ge=0)
    agents: int = Field(ge=0)
    version: str = Field(max_length=64)
    seen_at: float
    """When the host wrote this, by its own clock."""


class ItemEntry(WireModel):
    """The state of one of a host's approvals or operator questions, as the other hosts
    mirror it (subject `hive.<hive>.events.<host>.<kind>.<id>`)."""

    v: Literal[1] = 1
    host: str = Field(min_length=1, max_length=32)
    """The host holding it; must match the subject's host token."""
    seq: int = Field(ge=1)
    """Counts up with every state this host publishes: a reader keeps the highest it took
    for each item and skips anything older."""
    approval: Approval | None = None
    question: Question | None = None
    inbox: InboxSummary | None = None
    """Its operator inbox (kind `inbox`, id 0)."""
