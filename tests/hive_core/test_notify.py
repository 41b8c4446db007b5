"""Notifications against real local receivers (no stand-in for Apprise): a loopback HTTP
server for `json://` and `ntfy://`, `aiosmtpd` for `mailto://`. New attention items reach
each URL that wants them, once; approvals and questions are re-nudged on the clock; a URL
that fails or hangs slows only itself and shows in the status; URLs are checked at start
and shown masked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.errors import StartupError
from hive_core.notify import Notifications, targets_of
from hive_core.registry import Registry
from hive_core.settings import Settings
from hive_share.events import AttentionChanged
from hive_share.models import AttentionItem, AttentionKind, Severity
from tests.hive_core.conftest import T0, FakeClock, services
from tests.hive_core.test_crash_watch import FakeBackend
from tests.receivers import BOUND, http_receiver, mail_server

MINUTE = 60.0


def item(key: str, kind: AttentionKind = "approval", severity: Severity = "warn") -> AttentionItem:
    return AttentionItem(
        key=key, kind=kind, agent="carol", summary=f"{key}: spawn carol", since=T0,
        severity=severity, action="hive-core approve 1",
    )  # fmt: skip


@asynccontextmanager
async def notifying(
    db: Database, clock: FakeClock, root: Path, *urls: str, **settings: Any
) -> AsyncIterator[Notifications]:
    """Notifications to `urls` under `settings`, running, fed by the test through the bus."""
    bus = EventBus()
    registry = Registry(db, clock)
    await registry.load()
    broker = Broker(db, bus, clock, registry.is_recipient)
    s = services(db, bus, clock, registry, broker, FakeBackend(), root / "s", root / "r")
    s.settings = s.settings.model_copy(update=settings)
    s.notifier = Notifications(s, targets_of(Settings(notify_urls=urls)))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.notifier.run)
            await anyio.wait_all_tasks_blocked()
            yield s.notifier
            tg.cancel_scope.cancel()
    finally:
        broker.close()


def publish(n: Notifications, *items: AttentionItem) -> None:
    n._s.bus.publish(AttentionChanged(items=list(items)))


def mailto(port: int) -> str:
    return f"mailto://127.0.0.1:{port}?to=op@example.com&from=hive@example.com&mode=insecure"


async def test_a_pending_approval_reaches_a_webhook_ntfy_and_mail_within_2_s(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    with http_receiver() as hook, mail_server() as mail:
        urls = (hook.url(), hook.url("ntfy", "/hive"), mailto(mail.port))
        async with notifying(db, clock, tmp_path, *urls) as n:
            started = time.monotonic()
            publish(n, item("approval:1"))
            got = await anyio.to_thread.run_sync(hook.wait_for, 2)
            mails = await anyio.to_thread.run_sync(mail.wait_for, 1)
            assert time.monotonic() - started < 2.0
            with anyio.fail_after(BOUND):
                for i in range(3):
                    await n.attempted(i, 1)
            assert [t.sent for t in n.status()] == [1, 1, 1]
    by_path = dict(got)
    assert by_path["/hook"]["message"].startswith("approval:1: spawn carol")
    assert "hive-core approve 1" in by_path["/hook"]["message"]
    assert by_path["/"]["topic"] == "hive" and "approval (carol)" in by_path["/"]["title"]
    assert mails[0][1] == ["op@example.com"] and "spawn carol" in mails[0][2]


async def test_each_item_is_sent_once_and_again_only_if_it_comes_back(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    with http_receiver() as hook:
        async with notifying(db, clock, tmp_path, hook.url()) as n:
            publish(n, item("approval:1"))
            publish(n, item("approval:1"), item("crash:bob", "crashed"))
            publish(n, item("crash:bob", "crashed"))  # the approval decided
            await anyio.to_thread.run_sync(hook.wait_for, 2)
            publish(n, item("crash:bob", "crashed"), item("approval:1"))  # back: news again
            got = await anyio.to_thread.run_sync(hook.wait_for, 3)
            assert len(hook.got) == 3
    assert [m["message"].split(":")[0] for _, m in got] == ["approval", "crash", "approval"]


async def test_each_url_gets_only_what_its_filters_let_through(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    with http_receiver() as hook:
        urgent = hook.url(path="/urgent", query="hive_severity=urgent")
        questions = hook.url(
            path="/questions", query="hive_kinds=question,given_up&hive_severity=info"
        )
        async with notifying(db, clock, tmp_path, urgent, questions) as n:
            assert [t.severity for t in n.status()] == ["urgent", "info"]
            publish(
                n, item("approval:1"), item("question:2", "question"),
                item("crash:bob", "given_up", "urgent"), item("inbox", "operator_message", "info"),
            )  # fmt: skip
            await anyio.to_thread.run_sync(hook.wait_for, 3)
            publish(n)  # and one more thing through each queue, to be sure nothing else comes
            assert sorted((path, m["message"].split(":")[0]) for path, m in hook.got) == [
                ("/questions", "crash"), ("/questions", "question"), ("/urgent", "crash"),
            ]  # fmt: skip


async def test_an_open_approval_is_renudged_after_30_min_then_hourly_and_no_more(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    with http_receiver() as hook:
        async with notifying(db, clock, tmp_path, hook.url()) as n:
            publish(n, item("approval:1"), item("crash:bob", "crashed"))
            await anyio.to_thread.run_sync(hook.wait_for, 2)
            # Sent at 0, again at 30 min, then every hour after that: 90, 150. When each
            # was last sent is the notifier's record, exact at once (a delivery may still
            # be on its way when the count is read).
            steps = ((29, 2, 0), (1, 3, 30), (59, 3, 30), (1, 4, 90), (59, 4, 90), (1, 5, 150))
            for minutes, expected, last_sent in steps:
                clock.advance(minutes * MINUTE)
                await n.nudge()
                await n.nudge()  # twice: never more than once per interval
                assert n._seen["approval:1"] == T0 + last_sent * MINUTE, minutes
                got = await anyio.to_thread.run_sync(hook.wait_for, expected)
                assert len(hook.got) == expected, minutes
            assert all("still waiting" in m["title"] for _, m in got[2:])
            assert all(m["message"].startswith("approval:1") for _, m in got[2:])  # not the crash


async def test_a_failing_or_hanging_url_slows_only_itself_and_shows_in_the_status(
    db: Database, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        http_receiver(status=500) as broken,
        http_receiver(hang=True) as stuck,
        http_receiver() as fine,
    ):
        async with notifying(db, clock, tmp_path, broken.url(), stuck.url(), fine.url()) as n:
            publish(n, item("approval:1"))
            publish(n, item("approval:1"), item("question:2", "question"))
            with anyio.fail_after(BOUND):
                await n.attempted(2, 2)  # the fine one: not held up by the others
                await n.attempted(0, 1)
            bad, hanging, good = n.status()
            assert bad.failing and bad.last_error and bad.sent == 0 and bad.queued == 2
            assert hanging.sent == 0 and hanging.queued == 2
            assert good.sent == 2 and not good.failing and good.last_ok_at == T0
    ours = [r.getMessage() for r in caplog.records if r.name == "hive_core.notify"]
    assert sum(bad.url in m and " fail: " in m for m in ours) == 1  # once per streak


def test_urls_are_checked_at_start_and_shown_masked(tmp_path: Path) -> None:
    listed = tmp_path / "urls"
    listed.write_text("# mine\njson://user:s3cret@127.0.0.1:9/x, ntfy://127.0.0.1:9/t\n")
    targets = targets_of(Settings(notify_urls_file=listed))
    assert targets[0].masked.startswith("json://user:****@127.0.0.1:9/x")
    assert all("s3cret" not in t.masked for t in targets)
    with pytest.raises(StartupError, match="not a notification URL"):
        targets_of(Settings(notify_urls=("nosuchscheme://user:s3cret@host/x",)))
    with pytest.raises(StartupError, match="hive_severity") as info:
        targets_of(Settings(notify_urls=("json://u:s3cret@h/x?hive_severity=loud",)))
    assert "s3cret" not in str(info.value)
    with pytest.raises(StartupError, match="cannot read"):
        targets_of(Settings(notify_urls_file=tmp_path / "missing"))
    assert targets_of(Settings()) == []


async def test_notify_test_reports_each_url(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    with http_receiver() as hook, http_receiver(status=500) as broken:
        async with notifying(db, clock, tmp_path, hook.url(), broken.url()) as n:
            ok, bad = await n.test()
    assert (ok.ok, bad.ok) == (True, False) and bad.error
    assert "can reach you here" in hook.got[0][1]["message"]


def test_the_public_url_must_be_http_with_a_host() -> None:
    assert Settings(public_url="https://hive.example.net/").public_url == "https://hive.example.net"
    for bad in ("ftp://hive.example.net", "https://", "hive.example.net"):
        with pytest.raises(ValidationError, match="not an http"):
            Settings(public_url=bad)


async def test_quiet_hours_hold_all_but_urgent_items_for_a_digest_when_they_end(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    hour = time.localtime(T0).tm_hour
    quiet = (hour, (hour + 2) % 24)  # from now for two hours
    with http_receiver() as hook:
        async with notifying(db, clock, tmp_path, hook.url(), notify_quiet_hours=quiet) as n:
            assert n.quiet_now()
            publish(n, item("approval:1"), item("crash:bob", "given_up", "urgent"))
            ((_, first),) = await anyio.to_thread.run_sync(hook.wait_for, 1)
            assert first["message"].startswith("crash:bob")  # urgent: at once
            publish(n, item("approval:1"), item("crash:bob", "given_up", "urgent"),
                    item("question:2", "question"))  # fmt: skip
            await anyio.wait_all_tasks_blocked()  # the list followed
            n.digest()  # still quiet: nothing
            clock.advance(2 * 3600 + 60)
            assert not n.quiet_now()
            n.digest()
            n.digest()  # once
            got = await anyio.to_thread.run_sync(hook.wait_for, 2)
            assert len(hook.got) == 2
    digest = got[1][1]
    assert digest["title"].endswith("2 items for you")
    assert "approval:1: spawn carol" in digest["message"]
    assert "question:2: spawn carol" in digest["message"]


async def test_info_items_go_out_together_at_most_once_per_digest_interval(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    with http_receiver() as hook:
        url = hook.url(query="hive_severity=info")
        async with notifying(db, clock, tmp_path, url, notify_digest_minutes=60.0) as n:
            inbox = item("inbox", "operator_message", "info")
            update = item("needs_update:bob", "needs_update", "info")
            publish(n, inbox, item("approval:1"))
            ((_, first),) = await anyio.to_thread.run_sync(hook.wait_for, 1)
            assert first["message"].startswith("approval:1")  # warn: at once
            publish(n, inbox, item("approval:1"), update)
            await anyio.wait_all_tasks_blocked()  # the list followed
            clock.advance(59 * MINUTE)
            n.digest()
            clock.advance(2 * MINUTE)
            n.digest()
            got = await anyio.to_thread.run_sync(hook.wait_for, 2)
            assert len(hook.got) == 2
    assert got[1][1]["title"].endswith("2 items for you")


async def test_an_approval_carries_its_links_and_ntfy_shows_them_as_buttons(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    with http_receiver() as hook:
        async with notifying(db, clock, tmp_path, hook.url("ntfy", "/hive")) as n:
            n._s.dashboard_url = "http://127.0.0.1:7/"
            publish(n, item("approval:1").model_copy(update={"ref": 1}))
            ((_, got),) = await anyio.to_thread.run_sync(hook.wait_for, 1)
            buttons = hook.headers[0]["X-Actions"]
    links = dict(line.split(": ", 1) for line in got["message"].splitlines()[2:4])
    assert set(links) == {"approve", "deny"}
    for label, url in links.items():
        assert url.startswith("http://127.0.0.1:7/act/")
        assert n._s.links.read(url.rsplit("/", 1)[1]).action == label
        assert f"view, {label}, {url}" in buttons
