"""The messages on the wire: `send`, the leased long-poll `recv` and its `ack`, the
operator's `inbox`; and `version` and `ping`, which every socket answers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from hive_share.framing import INT64_MAX
from hive_share.models import Principal, WireModel
from hive_share.request_fields import (
    MAX_BODY,
    MAX_WAIT_SECONDS,
    HostId,
    Id,
    IdempotencyKey,
    fits_json,
)


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
    body: Annotated[str, Field(min_length=1, max_length=MAX_BODY), AfterValidator(fits_json)]
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
    host: HostId | None = None
    """Another host's operator inbox, read (and marked read) on that host."""
