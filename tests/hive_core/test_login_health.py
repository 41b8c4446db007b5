"""Login health as fleet state: each agent's login with the time it was reported and, when
its credentials say so, when it expires; `list` rows carry both, and the attention list has
a needs-login item from the report's time and a `login_expiring` item a day ahead."""

from __future__ import annotations

from pathlib import Path

from hive_core import agent_info, notices
from hive_core.db import Database
from hive_share.models import AgentInfo
from tests.hive_core.conftest import T0, FakeClock
from tests.hive_core.test_attention import Hive, hive

DAY = 24 * 3600.0


def row(h: Hive, name: str) -> AgentInfo:
    record = h.s.registry.find(name)
    assert record is not None
    return agent_info.info(h.s, record)


async def test_a_login_report_is_kept_with_its_time_and_expiry(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        assert (row(h, "alice").login, row(h, "alice").login_since) == ("unknown", None)
        clock.advance(10)
        await notices.login_state(h.s, "alice", "logged_in", "", expires_at=T0 + 3 * DAY)
        alice = row(h, "alice")
        assert (alice.login, alice.login_since, alice.login_expires_at) == (
            "logged_in", T0 + 10, T0 + 3 * DAY,
        )  # fmt: skip
        clock.advance(10)
        await notices.login_state(h.s, "alice", "logged_in", "")  # renewed: no expiry known
        alice = row(h, "alice")
        assert (alice.login_since, alice.login_expires_at) == (T0 + 10, None)  # same state


async def test_an_expiring_login_is_on_the_list_a_day_ahead(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        for name in ("alice", "bob"):
            await h.s.registry.set_desired(name, "running")
        await notices.login_state(h.s, "alice", "logged_in", "", expires_at=T0 + 2 * DAY)
        await notices.login_state(h.s, "bob", "needs_login", "no credentials")
        items = {i.kind: i for i in await h.attention.compute()}
        assert set(items) == {"needs_login"}
        assert items["needs_login"].since == T0  # when it was reported
        clock.advance(DAY + 3600)  # 23 hours left
        items = {i.kind: i for i in await h.attention.compute()}
        expiring = items["login_expiring"]
        assert (expiring.agent, expiring.severity, expiring.since) == ("alice", "warn", T0 + DAY)
        assert expiring.summary == "alice's Claude Code login expires in 23 h"
        await notices.login_state(h.s, "alice", "logged_in", "")  # logged in again
        assert "login_expiring" not in {i.kind for i in await h.attention.compute()}
