"""Reminders over the real sockets and CLI: one fires with its file's content and is listed as
delivered, one survives a daemon restart and fires once, paths outside the state dir are refused,
and files are read without following links or reading too much. The test plays the agent
(`spawn_idle`): its harness is stopped, so nothing else reads its inbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import RemoteError
from tests.e2e.hive import Hive
from tests.e2e.raw import RawConn
from tests.e2e.test_coordination import cli_json, remind, reminded, take, take_events


def state_of(hive: Hive, name: str) -> Path:
    return hive.state_dir / "agents" / name / "state"


async def test_a_reminder_fires_with_its_file_and_is_listed_as_delivered(hive: Hive) -> None:
    hive.spawn_idle("alice")
    notes = state_of(hive, "alice") / "notes"
    notes.mkdir()
    content = "- buy milk\n- ship the release \u2713\n"
    (notes / "todo.md").write_text(content, encoding="utf-8")
    size = (notes / "todo.md").stat().st_size
    async with hive.client(hive.agent_sock("alice")) as alice:
        set_ = await reminded(alice, remind("check todo", 1, "/state/notes/todo.md"))
        dropped = await reminded(alice, remind("never mind", 1))
        await alice.call(rq.CancelReminder(cmd="cancel_reminder", id=dropped.id), rs.ReminderResult)
        (due,) = await take_events(alice, helper.ReminderDue, 1)
        assert (due.id, due.message, due.payload_bytes) == (set_.id, "check todo", size)
        assert due.payload_note == f"/state/notes/todo.md: {size} bytes"
        full = await alice.call(
            rq.ListReminders(cmd="list_reminders", id=set_.id), rs.RemindersResult
        )
        (mine,) = full.reminders
        assert (mine.status, mine.payload, mine.file_path) == (
            "delivered", content, "/state/notes/todo.md",
        )  # fmt: skip
        assert mine.delivered_at is not None and mine.delivered_at >= mine.due_at
        with pytest.raises(RemoteError) as caught:
            await alice.call(
                rq.CancelReminder(cmd="cancel_reminder", id=set_.id), rs.ReminderResult
            )
        assert caught.value.code == "conflict"
        with pytest.raises(RemoteError) as caught:
            await alice.call(
                rq.ListReminders(cmd="list_reminders", agent="bob"), rs.RemindersResult
            )
        assert caught.value.code == "forbidden"
    shown = cli_json(hive, "reminders", "alice")
    assert [(r["id"], r["status"], r["payload_note"]) for r in shown] == [
        (set_.id, "delivered", f"/state/notes/todo.md: {size} bytes")
    ]  # the cancelled one is not shown
    assert shown[0]["payload"] is None  # a listing leaves payloads out; `id` shows one
    async with hive.client() as operator:
        got = await operator.call(
            rq.ListReminders(cmd="list_reminders", id=dropped.id), rs.RemindersResult
        )
    assert [r.status for r in got.reminders] == ["cancelled"]


async def test_a_reminder_survives_a_daemon_restart_and_fires_once(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with hive.client(hive.agent_sock("alice")) as alice:
        set_ = await reminded(alice, remind("after the restart", 3))
    assert [r["status"] for r in cli_json(hive, "reminders", "alice")] == ["pending"]
    assert hive.stop() == 0
    hive.start()
    async with hive.client(hive.agent_sock("alice")) as alice:
        (due,) = await take_events(alice, helper.ReminderDue, 1)
        assert (due.id, due.message) == (set_.id, "after the restart")
        assert await take(alice, 8) == []  # more than one tick: not fired a second time
    assert [r["status"] for r in cli_json(hive, "reminders", "alice")] == ["delivered"]


ESCAPES = [
    "/etc/passwd",
    "/state/../x",
    "/state/notes/../../x",
    "/state//x",
    "state/x",
    "/state/./x",
    "/state/x/.",
    "/proc/self/environ",
    "/state/",
    "/state/a\x00b",
    "/state/\x00",
    "/stateful/x",
]


async def test_reminder_paths_outside_the_state_dir_are_refused(hive: Hive) -> None:
    hive.spawn_idle("alice")
    conn = await RawConn.open(hive.agent_sock("alice"))
    try:
        for path in ESCAPES:
            reply = await conn.ask_json(
                {"cmd": "remind", "message": "x", "in_seconds": 1, "file_path": path}
            )
            assert reply is not None, path
            assert (reply["ok"], reply["code"]) == (False, "invalid_request"), (path, reply)
    finally:
        await conn.close()
    assert cli_json(hive, "reminders", "alice") == []  # nothing was stored


async def test_reminder_files_are_read_without_following_links_or_reading_too_much(
    hive: Hive,
) -> None:
    hive.spawn_idle("alice")
    state = state_of(hive, "alice")
    os.symlink("/etc", state / "link")
    os.symlink("/etc/hostname", state / "leaf")
    (state / "big.txt").write_bytes(b"x" * (64 * 1024 + 1))
    (state / "exact.txt").write_bytes(b"y" * (64 * 1024))
    os.mkfifo(state / "pipe")
    cases = {
        "/state/link/passwd": "not followed",
        "/state/leaf": "not followed",
        "/state/missing.md": "did not exist",
        "/state/big.txt": "at most",
        "/state/pipe": "not a regular file",
        "/state/exact.txt": "65536 bytes",
    }
    async with hive.client(hive.agent_sock("alice")) as alice:
        ids = {
            (await reminded(alice, remind(f"about {p}", 1, p))).id: p for p in cases
        }  # accepted at remind time: only the firing reads the file
        events = await take_events(alice, helper.ReminderDue, len(cases))
        assert sorted(e.id for e in events) == sorted(ids)
        for event in events:
            path = ids[event.id]
            assert event.payload_note is not None and cases[path] in event.payload_note, event
            if path == "/state/exact.txt":
                assert event.payload_bytes == 64 * 1024
            else:
                assert event.payload_bytes is None, event
            listed = await alice.call(
                rq.ListReminders(cmd="list_reminders", id=event.id), rs.RemindersResult
            )
            (full,) = listed.reminders
            assert full.status == "delivered"
            if path == "/state/exact.txt":
                assert full.payload == "y" * (64 * 1024)
            else:
                assert full.payload is None, full
