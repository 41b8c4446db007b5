"""At start-up on the nixos backend, a meta lock whose `hyperhive` input holds other code
than hive-core runs is told as `needs_update`, for every agent, to its overseer."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from hive_core.backend_setup import tell_stale_lock
from hive_core.containers.nixos import NixosBackend
from hive_core.db import Database
from hive_core.errors import BackendError
from hive_share import build, helper
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import FakeClock
from tests.hive_core.test_login_notes import running


class Meta:
    """What `tell_stale_lock` asks the backend: the news about its lock, for a digest."""

    def __init__(self, news: str | None = None, error: str | None = None) -> None:
        self.news, self.error = news, error
        self.asked: list[str] = []

    async def lock_news(self, running: str) -> str | None:
        self.asked.append(running)
        if self.error is not None:
            raise BackendError(self.error)
        return self.news


async def test_a_stale_lock_is_told_for_every_agent(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with running(db, clock, tmp_path) as d:
        backend = Meta("meta's hyperhive input is not the code hive-core runs")
        await tell_stale_lock(d.s, cast(NixosBackend, backend))
        assert backend.asked == [build.running_digest()]
        for recipient, about in ((MANAGER_NAME, "alice"), (OPERATOR, MANAGER_NAME)):
            got = await d.s.broker.recv(recipient, owner=1, wait_seconds=0, limit=10)
            assert [m.event for m in got] == [
                helper.NeedsUpdate(agent=about, detail=backend.news or "")
            ]


async def test_a_current_or_unknowable_lock_tells_nobody(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with running(db, clock, tmp_path) as d:
        await tell_stale_lock(d.s, cast(NixosBackend, Meta(None)))
        await tell_stale_lock(d.s, cast(NixosBackend, Meta(error="nix: no flake.lock")))
        assert await d.told(MANAGER_NAME) == []
        assert await d.told(OPERATOR) == []
