"""Stuck signals."""

from __future__ import annotations

from hive_core.services import Services
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.live import TurnState
from hive_share.models import AttentionItem


class StuckWatch:
    def __init__(self, s: Services) -> None:
        self._s = s

    async def report(self, agent: str, req: rq.ReportStuck) -> None:
        return None

    def limits(self, agent: str) -> rs.WatchLimits:
        st = self._s.settings
        return rs.WatchLimits(
            no_progress_seconds=st.stuck_no_progress_minutes * 60,
            repeat=st.stuck_repeat,
            burn_tokens=st.stuck_burn_tokens,
        )

    def turn_state(self, agent: str, state: TurnState) -> None:
        return None

    def turn_used(self, agent: str, tools: dict[str, int], ended_at: float) -> None:
        return None

    def items(self) -> list[AttentionItem]:
        return []
