"""What reaches a harness: the requests its own socket (`harness.sock`) takes (the turn
controls, its events, the turn status, the Claude Code login session, the agent page's
login codes), and the host's requests that hand one on or read the harness (`relay`,
`harness_log`, `login_link`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hive_share.framing import INT64_MAX
from hive_share.live import TurnState
from hive_share.models import AgentName, WireModel
from hive_share.request_fields import MAX_WAIT_SECONDS, RELAY_WAIT_SECONDS


class Cancel(WireModel):
    """Harness socket: interrupt the running turn."""

    cmd: Literal["cancel"]


class NewSession(WireModel):
    """Harness socket: run the next turn without `--continue`."""

    cmd: Literal["new_session"]


class SetModel(WireModel):
    """Harness socket: switch the model from the next turn on (persisted)."""

    cmd: Literal["set_model"]
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:\[\]-]{1,100}$")]


class Compact(WireModel):
    """Harness socket: compact the session (`/compact`) before the next turn's prompt."""

    cmd: Literal["compact"]


class Events(WireModel):
    """Harness socket: its turn events above `after`, oldest first; with `wait_seconds`,
    wait for one (what `hive-core logs` reads and follows)."""

    cmd: Literal["events"]
    after: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    """Only events with a `seq` above this; 0 with `limit` gives the newest `limit`."""
    limit: Annotated[int, Field(ge=1, le=1000)] = 200
    wait_seconds: Annotated[float, Field(ge=0, le=RELAY_WAIT_SECONDS)] = 0.0


class TurnStatus(WireModel):
    """Harness socket: turn state and counters, once `turns_run >= after_turns` (long-poll)."""

    cmd: Literal["turn_status"]
    after_turns: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    until_state: TurnState | None = None
    """Also wait until the turn state is this one."""
    wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0.0


class LoginStart(WireModel):
    """Harness socket: run `claude auth login` and relay it (one session at a time)."""

    cmd: Literal["login_start"]


class LoginCode(WireModel):
    """Harness socket: the code the operator pasted, written to the login's stdin (never
    stored or logged)."""

    cmd: Literal["login_code"]
    code: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\r\n]+$")]


class LoginCancel(WireModel):
    """Harness socket: end the login session."""

    cmd: Literal["login_cancel"]


class LoginStatus(WireModel):
    """Harness socket: the login session's state and its output past `after` (characters);
    with `wait_seconds`, wait for more or for the end."""

    cmd: Literal["login_status"]
    after: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    wait_seconds: Annotated[float, Field(ge=0, le=RELAY_WAIT_SECONDS)] = 0.0


LoginControl = LoginStart | LoginCode | LoginCancel | LoginStatus


class HiveSignals(WireModel):
    """Harness socket: the stuck signals hive-core sees for this agent (`ping_pong`,
    `silent`), whole, each time they change: the agent's page shows them beside the ones
    its harness sees in the turn."""

    cmd: Literal["hive_signals"]
    signals: list[Literal["ping_pong", "silent"]] = Field(default_factory=list, max_length=2)


class WebCode(WireModel):
    """Harness socket: accept `code` once, within 10 minutes, as a login to the agent page
    (hive-core mints it for `login_link` with a name), with a send token for the page."""

    cmd: Literal["web_code"]
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{32,64}$")]
    send_token: Annotated[str, Field(pattern=r"^s1\.[a-z0-9.-]{1,190}$")] | None = None
    """The dashboard's send token for this agent: the page sends the operator's messages
    to it with this (none when the dashboard is off)."""


class Relay(WireModel):
    """Host socket: hand a turn control to an agent's harness (the CLI's and the
    dashboard's cancel, new session, model)."""

    cmd: Literal["relay"]
    name: AgentName
    request: Annotated[
        Cancel | NewSession | SetModel | Compact | Events | LoginControl,
        Field(discriminator="cmd"),
    ]


class HarnessLog(WireModel):
    """Host socket: an agent's harness log: the last `lines` lines, or, with `offset`,
    what was appended past it (what `hive-core logs --raw [-f]` reads)."""

    cmd: Literal["harness_log"]
    name: AgentName
    lines: Annotated[int, Field(ge=1, le=2000)] = 200
    offset: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None


class LoginLink(WireModel):
    """A fresh one-time login link (operator only): the dashboard's, or with `name` that
    agent's page."""

    cmd: Literal["login_link"]
    name: AgentName | None = None
