"""One-tap action links: a link this hive signed reads back as what it was made for; a
changed, foreign or expired one is refused, and each works once, even when two uses race;
the confirm page shows what will happen, the diff of an approval included, and refuses an
item that no longer waits."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hive_core.action_links import ActionLinks, BadLink
from hive_core.dashboard.act import _describe, _page
from hive_core.db import Database
from hive_share.names import MANAGER_NAME
from tests.hive_core.conftest import FakeClock
from tests.hive_core.test_attention import hive

KEY = b"k" * 32


def links(db: Database, clock: FakeClock, key: bytes = KEY) -> ActionLinks:
    return ActionLinks(key, db, clock, hours=24)


async def test_a_link_reads_back_as_what_it_was_made_for(db: Database, clock: FakeClock) -> None:
    made = links(db, clock)
    link = made.read(made.mint("approve", "approval:7", "7"))
    assert (link.action, link.key, link.ref) == ("approve", "approval:7", "7")
    assert link.expires == clock.now() + 24 * 3600


@pytest.mark.parametrize("change", ["payload", "signature", "shape"])
async def test_a_changed_link_is_refused(db: Database, clock: FakeClock, change: str) -> None:
    made = links(db, clock)
    token = made.mint("approve", "approval:7", "7")
    body, signature = token.split(".")
    other = made.mint("approve", "approval:8", "8").split(".")[0]
    changed = {
        "payload": f"{other}.{signature}",  # another item's payload under this signature
        "signature": f"{body}.{signature[:-2]}AA",
        "shape": f"{body}.{signature}.x",
    }[change]
    with pytest.raises(BadLink):
        made.read(changed)


async def test_a_foreign_or_expired_link_is_refused(db: Database, clock: FakeClock) -> None:
    token = links(db, clock).mint("deny", "approval:7", "7")
    with pytest.raises(BadLink, match="not made by this hive"):
        links(db, clock, key=b"o" * 32).read(token)
    clock.advance(24 * 3600)
    with pytest.raises(BadLink, match="expired"):
        links(db, clock).read(token)


async def test_a_link_works_once_even_when_two_uses_race(db: Database, clock: FakeClock) -> None:
    made = links(db, clock)
    link = made.read(made.mint("cancel", "stuck_repetition:alice", "alice"))
    assert not await made.used(link)
    outcomes: list[str] = []

    async def use() -> None:
        try:
            await made.use(link)
            outcomes.append("used")
        except BadLink:
            outcomes.append("refused")

    async with anyio.create_task_group() as tg:
        tg.start_soon(use)
        tg.start_soon(use)
    assert sorted(outcomes) == ["refused", "used"]
    assert await made.used(link)
    clock.advance(25 * 3600)
    await made.prune()  # expired anyway: forgotten
    assert not await made.used(link)


async def test_the_confirm_page_shows_the_diff_and_refuses_what_no_longer_waits(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        diff = 'diff --git a/agent.toml b/agent.toml\n+model = "<opus>"\n'
        a = await h.s.approvals.add("apply_commit", "alice", MANAGER_NAME, commit="c" * 40,
                                    diff=diff)  # fmt: skip
        link = h.s.links.read(h.s.links.mint("approve", f"approval:{a.id}", str(a.id)))
        title, lines, shown = await _describe(h.s, link)
        assert title == f"approve approval {a.id}?" and shown == diff
        page = _page(title, lines, shown, "tok")
        assert "&lt;opus&gt;" in page and "<opus>" not in page  # escaped
        assert 'data-token="tok"' in page and 'src="/assets/act.js"' in page
        await h.s.approvals.resolve(a.id, "denied", None, was=("pending",))
        with pytest.raises(BadLink, match="denied already"):
            await _describe(h.s, link)
