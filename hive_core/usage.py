"""What each agent's turns cost, summed over the budget windows, and the budgets on them."""

from __future__ import annotations

from hive_core.errors import InvalidRequest
from hive_core.services import Services
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.base import BudgetWindow
from hive_share.models import AttentionItem


class Usage:
    def __init__(self, s: Services) -> None:
        self._s = s

    async def record(self, agent: str, req: rq.ReportTurnUsage) -> bool:
        raise InvalidRequest("usage is not recorded yet")

    async def report(
        self, agent: str | None, window: BudgetWindow | None, hourly: bool
    ) -> rs.UsageReport:
        raise InvalidRequest("usage is not recorded yet")

    async def items(self) -> list[AttentionItem]:
        return []
