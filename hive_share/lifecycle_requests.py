"""Agents' lifecycle and approvals on the wire: spawning (at once, or by approval), config
repos and proposed commits, `update`, the approval queue (`show_approval`, `approve`,
`deny`, `pending`), start / stop / kill / restart / rebuild / destroy, and `list`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hive_share.models import AgentName, WireModel
from hive_share.request_fields import HostId, Id


class Spawn(WireModel):
    """Create and start an agent (operator only); in a hive across hosts, on `host`, else
    on the host with the most free places."""

    cmd: Literal["spawn"]
    name: AgentName
    host: HostId | None = None


class RequestSpawn(WireModel):
    """Queue a spawn for the operator's approval; in a hive across hosts, of an agent on
    `host` (the approval is that host's), else on the host with the most free places."""

    cmd: Literal["request_spawn"]
    name: AgentName
    host: HostId | None = None


class RequestInitConfig(WireModel):
    """Manager socket: seed an agent's config repos (it need not exist yet), so its
    config can be prepared before its spawn is requested."""

    cmd: Literal["request_init_config"]
    name: AgentName


class RequestApplyCommit(WireModel):
    """Manager socket: propose a commit of `agent`'s proposed repo for deployment."""

    cmd: Literal["request_apply_commit"]
    agent: AgentName
    commit: Annotated[str, Field(pattern=r"^([0-9a-f]{40}|[0-9a-f]{64})$")]
    """The full commit id (`git rev-parse HEAD` in the working copy)."""


class Update(WireModel):
    """Queue an approval that rebuilds every agent whose harness runs another version."""

    cmd: Literal["update"]


class ShowApproval(WireModel):
    """One approval whole, pending or resolved, with its diff."""

    cmd: Literal["show_approval"]
    id: Id
    host: HostId | None = None
    """The host that holds it, when it is another host's (`pending` shows it)."""


class Approve(WireModel):
    """Approve a pending approval by id."""

    cmd: Literal["approve"]
    id: Id
    host: HostId | None = None
    """The host that holds it, when it is another host's (`pending` shows it)."""


class Deny(WireModel):
    """Deny a pending approval by id, with a reason the requester will see."""

    cmd: Literal["deny"]
    id: Id
    reason: Annotated[str, Field(max_length=4096)] = ""
    host: HostId | None = None
    """The host that holds it, when it is another host's (`pending` shows it)."""


class DeployedConfig(WireModel):
    """An agent's deployed config: its commit and its files (the dashboard's config view)."""

    cmd: Literal["deployed_config"]
    name: AgentName


class Start(WireModel):
    cmd: Literal["start"]
    name: AgentName


class Stop(WireModel):
    cmd: Literal["stop"]
    name: AgentName


class Kill(WireModel):
    cmd: Literal["kill"]
    name: AgentName


class Restart(WireModel):
    cmd: Literal["restart"]
    name: AgentName


class Rebuild(WireModel):
    cmd: Literal["rebuild"]
    name: AgentName


class Destroy(WireModel):
    """Stop and remove an agent, leaving a tombstone; `purge` removes the tombstone too."""

    cmd: Literal["destroy"]
    name: AgentName
    purge: bool = False


class List(WireModel):
    """Agents (and, on the host socket, tombstones)."""

    cmd: Literal["list"]


class Hosts(WireModel):
    """The hive's hosts (a hive that spans hosts): this one with its NATS link, and every
    other one it heard from, with the time since."""

    cmd: Literal["hosts"]


class Pending(WireModel):
    """Pending approvals."""

    cmd: Literal["pending"]
