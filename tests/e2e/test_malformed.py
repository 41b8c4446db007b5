"""Malformed or oversized lines on any socket leave the daemon up and the next request working."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hive_share import requests as rq
from hive_share.framing import MAX_LINE
from tests.e2e.hive import Hive
from tests.e2e.raw import RawConn

BAD_LINES = [
    (b"not json", "malformed"),
    (b"[1, 2]", "malformed"),
    (b'"just a string"', "malformed"),
    (b'{"cmd": 5}', "malformed"),
    (b"{}", "malformed"),
    (b'{"cmd": "send", "to": "alice", "body": NaN}', "malformed"),
    (b'{"cmd": "recv", "wait_seconds": Infinity}', "malformed"),
    (b"\xff\xfe{}", "malformed"),
    (b'{"cmd": "no_such_verb"}', "unknown_verb"),
    (b'{"cmd": "version", "extra": 1}', "invalid_request"),
    (b'{"cmd": "send", "to": "alice"}', "invalid_request"),
    (b'{"cmd": "send", "to": "alice", "body": ""}', "invalid_request"),
    (b'{"cmd": "send", "to": "alice", "body": "x", "idempotency_key": "a b"}', "invalid_request"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed"),
    # numbers: too wide for Python's int parsing, for SQLite, or of the wrong type
    (b'{"cmd": "answer", "id": ' + b"9" * 5000 + b', "answer": "x"}', "malformed"),
    (b'{"cmd": "ack", "ids": [' + b"1" * 4301 + b"]}", "malformed"),
    (b'{"cmd": "ack", "ids": [9223372036854775808]}', "malformed"),
    (b'{"cmd": "ack", "ids": [-9223372036854775809]}', "malformed"),
    (b'{"cmd": "ack", "ids": [9223372036854775807]}', None),
    (b'{"cmd": "recv", "max": true}', "invalid_request"),
    (b'{"cmd": "recv", "max": "5"}', "invalid_request"),
    (b'{"cmd": "recv", "max": 5.0}', "invalid_request"),
    (b'{"cmd": "recv", "wait_seconds": "1"}', "invalid_request"),
    (b'{"cmd": "recv", "wait_seconds": 1e400}', "malformed"),
    (rb'{"cmd": "send", "to": "alice", "body": "x\u0000y"}', None),
    (rb'{"cmd": "send", "to": "alice", "body": "\ud800"}', None),
]

ID_VERBS = [
    b'{"cmd": "answer", "id": %d, "answer": "x"}',
    b'{"cmd": "cancel_question", "id": %d}',
    b'{"cmd": "approve", "id": %d}',
    b'{"cmd": "deny", "id": %d}',
    b'{"cmd": "list_reminders", "id": %d}',
    b'{"cmd": "cancel_reminder", "id": %d}',
    b'{"cmd": "inbox", "before": %d}',
    b'{"cmd": "ack", "ids": [%d]}',
]


def sockets(hive: Hive) -> dict[str, Path]:
    return {
        "host": hive.host_sock,
        "manager": hive.manager_sock,
        "agent": hive.agent_sock("alice"),
        "harness": hive.harness_sock("alice"),
    }


@pytest.mark.parametrize("which", ["host", "manager", "agent", "harness"])
async def test_bad_lines_get_errors_and_the_connection_stays_usable(hive: Hive, which: str) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    conn = await RawConn.open(sockets(hive)[which])
    try:
        for line, code in BAD_LINES:
            reply = await conn.ask(line)
            assert reply is not None, line[:40]
            if code is None:  # well-formed: whatever the verb answers, it answers
                continue
            assert reply["ok"] is False
            if which != "harness":  # the harness answers every refusal the same way
                assert reply["code"] == _expected(which, line, code), (line[:40], reply)
            reply_ok(await conn.ask(b'{"cmd": "version"}'))
    finally:
        await conn.close()
    assert "Traceback" not in hive.log_path.read_text(errors="replace")
    assert "Traceback" not in _harness_log(hive, "alice")


def _expected(which: str, line: bytes, code: str) -> str:
    """A well-formed request for a verb this socket does not take is refused as such."""
    verbs = {"host": rq.HOST_VERBS, "manager": rq.MANAGER_VERBS, "agent": rq.AGENT_VERBS}[which]
    cmd = re.match(rb'\{"cmd": "(\w+)"', line)
    if code == "invalid_request" and cmd and cmd.group(1).decode() not in verbs:
        return "verb_not_allowed"
    return code


def _harness_log(hive: Hive, name: str) -> str:
    path = hive.state_dir / "agents" / name / "harness.log"
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.parametrize("which", ["host", "manager", "agent"])
async def test_ids_beyond_sqlite_integers_are_refused_without_a_traceback(
    hive: Hive, which: str
) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    conn = await RawConn.open(sockets(hive)[which])
    try:
        for template in ID_VERBS:
            for value in (2**63, 2**64, -(2**63) - 1, 0):
                reply = await conn.ask(template % value)
                assert reply is not None and reply["ok"] is False, (template, value)
                assert reply["code"] in {"malformed", "invalid_request", "verb_not_allowed"}, (
                    template,
                    value,
                    reply,
                )
            reply_ok(await conn.ask(b'{"cmd": "version"}'))
    finally:
        await conn.close()
    assert "Traceback" not in hive.log_path.read_text(errors="replace")


def reply_ok(reply: dict[str, object] | None) -> dict[str, object]:
    assert reply is not None and reply["ok"] is True and reply["result"] == "version"
    return reply


@pytest.mark.parametrize("which", ["host", "manager", "agent", "harness"])
async def test_oversized_line_closes_only_that_connection(hive: Hive, which: str) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    path = sockets(hive)[which]
    bystander = await RawConn.open(path)
    conn = await RawConn.open(path)
    try:
        reply = await conn.ask(b'{"cmd": "version", "pad": "' + b"x" * (MAX_LINE + 10) + b'"}')
        assert reply is not None and reply["code"] == "too_long"
        assert await conn.closed_by_server()
        reply_ok(await bystander.ask_json({"cmd": "version"}))
        fresh = await RawConn.open(path)
        reply_ok(await fresh.ask_json({"cmd": "version"}))
        await fresh.close()
    finally:
        await conn.close()
        await bystander.close()
    assert hive.proc is not None and hive.proc.poll() is None


async def test_a_line_of_exactly_the_limit_is_parsed_not_refused(hive: Hive) -> None:
    conn = await RawConn.open(hive.host_sock)
    try:
        prefix = b'{"cmd": "version", "pad": "'
        line = prefix + b"x" * (MAX_LINE - len(prefix) - 2) + b'"}'
        assert len(line) == MAX_LINE
        reply = await conn.ask(line)
        assert reply is not None and reply["code"] == "invalid_request"  # parsed: extra field
    finally:
        await conn.close()
