"""What a harness tells hive-core about itself on its agent's socket (or the manager's):
`alive` with its build and model, its status line, its Claude Code login, its turn state,
what a turn cost and whether it looks stuck; `turn_slot` (turn admission); and `whoami` and
`watch_limits`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from hive_share.base import StuckSignal
from hive_share.live import TurnState
from hive_share.models import LoginReport, ModelSource, WireModel
from hive_share.request_fields import MAX_WAIT_SECONDS


class Alive(WireModel):
    """The harness reports itself up, with its pid."""

    cmd: Literal["alive"]
    pid: Annotated[int, Field(gt=0, le=2**31 - 1)]
    version: Annotated[str, Field(max_length=64)] | None = None
    """The harness's package version; one that differs from hive-core's needs a rebuild."""
    model: Annotated[str, Field(max_length=100)] | None = None
    """The model its next turn will run."""
    model_source: ModelSource | None = None
    """Where that model comes from (`set_model`, agent.toml, or the default)."""
    problems: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=20
    )
    """What its start check found wrong: agent.toml, the model, an extra MCP server that
    did not answer `initialize`. A deploy whose harness reports any is rolled back."""


class SetStatus(WireModel):
    """The agent's one-line status, shown to the operator."""

    cmd: Literal["set_status"]
    status: Annotated[str, Field(max_length=200)]


class Whoami(WireModel):
    """Who this socket's principal is."""

    cmd: Literal["whoami"]


class LoginState(WireModel):
    """The harness reports whether its Claude Code login works."""

    cmd: Literal["login_state"]
    state: LoginReport
    detail: Annotated[str, Field(max_length=1000)] = ""
    expires_at: Annotated[float, Field(ge=0)] | None = None
    """When the login stops working by itself (unix seconds): set only when the credentials
    say so and cannot renew themselves (no refresh token)."""


class ReportTurnState(WireModel):
    """The harness reports its turn state when it changes (the dashboard's turn chip), and
    its model and where that comes from when they change (a `set_model`, from any
    surface)."""

    cmd: Literal["turn_state"]
    state: TurnState
    model: Annotated[str, Field(max_length=100)] | None = None
    model_source: ModelSource | None = None


class TurnSlot(WireModel):
    """Turn admission: `take` waits (up to `wait_seconds`) for a place among the turns the
    hive runs at once; `started` says the turn's claude is up (its start place frees for the
    next turn); `give_back` ends the hold. A place belongs to the connection that took it and
    ends with it: a harness takes one on a connection of its own, which it closes as its turn
    ends."""

    cmd: Literal["turn_slot"]
    action: Literal["take", "started", "give_back"]
    wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0.0
    oldest: Annotated[int, Field(ge=1)] | None = None
    """With `take`: the id of the oldest message the turn is for; the oldest waits least.
    Counted only while that message is leased to this agent."""


TurnId = Annotated[str, Field(min_length=1, max_length=64)]
TokenCount = Annotated[int, Field(ge=0, le=10**12)]


class ReportStuck(WireModel):
    """The harness saw a stuck signal in the running turn (once per signal and turn), or,
    with `active` false, saw it end within the turn (progress again after `no_progress`).
    The turn's end clears every signal of the turn without a report."""

    cmd: Literal["stuck"]
    signal: StuckSignal
    turn_id: TurnId
    detail: Annotated[str, Field(max_length=500)] = ""
    active: bool = True


class WatchLimitsQuery(WireModel):
    """The stuck thresholds this agent's harness applies: hive-core's settings, overridden
    by the deployed agent.toml's `[stuck]` table."""

    cmd: Literal["watch_limits"]


class ReportTurnUsage(WireModel):
    """What one ended turn cost, summed over its claude runs: the turn-stats row's figures.
    Idempotent by `turn_id` (the harness resends until hive-core has it)."""

    cmd: Literal["turn_usage"]
    turn_id: TurnId
    started_at: Annotated[float, Field(ge=0)]
    ended_at: Annotated[float, Field(ge=0)]
    model: Annotated[str, Field(max_length=100)]
    result_kind: Annotated[str, Field(max_length=40)]
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_creation_input_tokens: TokenCount = 0
    cache_read_input_tokens: TokenCount = 0
    cost_usd: Annotated[float, Field(ge=0, le=1e6)] = 0.0
    tools: dict[Annotated[str, Field(max_length=200)], Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, max_length=200
    )
    """Calls per tool name."""
