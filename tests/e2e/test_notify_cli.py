"""Notifications from a real daemon to real local receivers: a queued approval reaches the
webhook within 2 s; `hive-core notify status` and `notify test` with their exit statuses; a
receiver that hangs slows neither an approval, a send nor the exit; a bad URL stops hive-core at
start without showing its secret."""

from __future__ import annotations

import json
import shutil
import time

import anyio

from tests.e2e.browser import browser, open_dashboard, problems
from tests.e2e.hive import Hive, running_hive, short_tmp
from tests.receivers import http_receiver


async def test_a_queued_approval_reaches_the_webhook_and_the_cli_reports_each_url() -> None:
    with http_receiver() as hook, http_receiver(status=500) as broken:
        urls = f"{hook.url()} , {broken.url(query='hive_severity=urgent')}"
        with running_hive({"HIVE_NOTIFY_URLS": urls, "HIVE_NOTIFY_HIVE_NAME": "lab"}) as hive:
            started = time.monotonic()
            assert hive.cli("request-spawn", "carol").returncode == 0
            ((_, got),) = await anyio.to_thread.run_sync(hook.wait_for, 1)
            assert time.monotonic() - started < 2.0
            assert got["title"] == "lab: approval (carol)"
            assert "spawn carol" in got["message"] and "hive-core approve" in got["message"]
            assert broken.got == []  # urgent only: an approval is not

            status = json.loads(hive.cli("notify", "status", "--json").stdout)
            assert [(t["severity"], t["sent"]) for t in status] == [("warn", 1), ("urgent", 0)]
            table = hive.cli("notify", "status")
            assert table.returncode == 0 and "json://127.0.0.1" in table.stdout

            tested = hive.cli("notify", "test")
            assert tested.returncode == 1, tested.stdout
            lines = tested.stdout.splitlines()
            assert lines[0].endswith(": sent") and ": failed:" in lines[1]
            assert "can reach you here" in hook.wait_for(2)[1][1]["message"]

            async with browser() as b:  # the dashboard's line for a failing URL
                page = await open_dashboard(b, hive)
                chip = page.locator("#notify-chip")
                await chip.wait_for()
                assert await chip.inner_text() == "notifications failing (1 of 2)"
                assert "500" in (await chip.get_attribute("title") or "")  # the last error
                assert problems(page) == []


async def test_a_hanging_receiver_slows_neither_an_approval_nor_a_send() -> None:
    with http_receiver(hang=True) as stuck, running_hive({"HIVE_NOTIFY_URLS": stuck.url()}) as hive:
        for name in ("carol", "dave"):
            started = time.monotonic()
            assert hive.cli("request-spawn", name).returncode == 0
            assert time.monotonic() - started < 2.0
        pending = json.loads(hive.cli("pending", "--json").stdout)
        started = time.monotonic()
        assert hive.cli("deny", str(pending[0]["id"])).returncode == 0
        assert hive.cli("send", "hm1nd", "hello").returncode == 0
        assert time.monotonic() - started < 3.0
        (target,) = json.loads(hive.cli("notify", "status", "--json").stdout)
        assert target["sent"] == 0 and target["queued"] >= 1


def test_a_bad_notification_url_stops_hive_core_at_start_without_its_secret() -> None:
    root = short_tmp()
    hive = Hive(root, {"HIVE_NOTIFY_URLS": "nosuch://admin:s3cret@example.com/x"})
    try:
        hive.start(ready=False)
        assert hive.proc is not None
        code = hive.proc.wait(timeout=60)
        log = hive.log()
    finally:
        hive.close()
        shutil.rmtree(root, ignore_errors=True)
    assert code != 0
    assert "not a notification URL Apprise knows" in log and "s3cret" not in log
