"""What a turn leaves behind: its TurnResult, the `messages_received` event of its items,
its token usage and `turn_ended` events, and its turn-stats row summed over its claude
runs with the post-turn counts of open threads and pending reminders."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hive_agent.claude import RunOutcome
from hive_agent.turn_stats import TurnRow, TurnStats
from hive_share import live
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient
from hive_share.live import LiveEvent, ResultKind
from hive_share.models import Message

logger = logging.getLogger(__name__)

INBOX_PREVIEW = 4000
"""Characters of each received message kept in its `messages_received` event."""
DETAIL_MAX = 2000
"""Characters of a result's detail kept in the turn's row and its `turn_ended` event."""


@dataclass(frozen=True)
class TurnStart:
    """What a turn is known by from its start."""

    turn_id: str
    started: float
    model: str
    """The model it runs, or `-` when agent.toml or the model file is invalid."""
    wake_from: list[str]
    new_session: bool


@dataclass(frozen=True)
class TurnResult:
    kind: ResultKind
    detail: str
    attempts: int = 1
    """Runs of the prompt itself (a compaction in between is not counted)."""
    received: bool = True
    """Whether the model received the wake prompt: its run got as far as `system/init`, which
    claude prints just before it sends the prompt. A cancelled turn's items count as handled
    only then."""


def received_event(items: Sequence[Message]) -> live.MessagesReceived:
    """The turn's items as its `messages_received` event, each body cut to INBOX_PREVIEW."""
    received = [
        live.ReceivedMessage(
            id=m.id, sender=m.sender, body=m.body[:INBOX_PREVIEW], sent_at=m.sent_at
        )
        for m in items
    ]
    return live.MessagesReceived(messages=received)


async def record(
    turn: TurnStart,
    runs: Sequence[RunOutcome],
    result: TurnResult,
    stats: TurnStats,
    socket: Path,
    emit: Callable[[LiveEvent], Awaitable[None]],
) -> None:
    """The turn's token usage (after its last run), its stats row, then `turn_ended`."""
    row = turn_row(turn, time.time(), runs, result)
    if runs:
        last = runs[-1].observer
        await emit(live.TokenUsageChanged(context_tokens=last.context_tokens, usage=last.usage()))
    row.open_threads_count, row.open_reminders_count = await loose_ends(socket)
    await stats.record(row)
    await emit(
        live.TurnEnded(
            turn_id=turn.turn_id, result=result.kind, detail=result.detail[:DETAIL_MAX],
            duration_ms=row.duration_ms,
        )
    )  # fmt: skip


def turn_row(
    turn: TurnStart, ended: float, runs: Sequence[RunOutcome], result: TurnResult
) -> TurnRow:
    """The turn's stats row: tokens, cost, tools and denials of every run (a compaction
    and its retry cost tokens too), the context size of the last."""
    row = TurnRow(
        turn_id=turn.turn_id, model=turn.model, wake_from=turn.wake_from,
        result_kind=result.kind, result_detail=result.detail[:DETAIL_MAX],
        started_at=turn.started, ended_at=ended, session_id=None,
        new_session=turn.new_session, attempts=result.attempts if runs else 0,
    )  # fmt: skip
    for run in runs:
        obs = run.observer
        usage = obs.usage()
        raw = obs.result or {}
        row.session_id = obs.session_id or row.session_id
        row.input_tokens += usage.input_tokens
        row.output_tokens += usage.output_tokens
        row.cache_creation_input_tokens += usage.cache_creation_input_tokens
        row.cache_read_input_tokens += usage.cache_read_input_tokens
        row.cost_usd += float(raw.get("total_cost_usd") or 0.0)
        for tool, count in obs.tool_calls.items():
            row.tools[tool] = row.tools.get(tool, 0) + count
        row.permission_denials += list(raw.get("permission_denials") or [])
    if runs:
        row.context_tokens = runs[-1].observer.context_tokens
    return row


async def loose_ends(socket: Path) -> tuple[int | None, int | None]:
    """Post-turn open-threads and pending-reminders counts (None if hive-core is away)."""
    try:
        async with HiveClient(socket) as core:
            got = await core.call(rq.GetOpenThreads(cmd="get_open_threads"), rs.OpenThreads)
    except ClientError as exc:
        logger.warning("could not count open threads after the turn: %s", exc)
        return None, None
    return len(got.approvals) + len(got.questions), got.pending_reminders
