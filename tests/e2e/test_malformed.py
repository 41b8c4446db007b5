"""Malformed or oversized lines on any socket leave the daemon up and the next request working."""

from __future__ import annotations

from pathlib import Path

import pytest

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
            assert reply["ok"] is False
            if which != "harness":  # the harness answers every refusal the same way
                assert reply["code"] == code, (line[:40], reply)
            reply_ok(await conn.ask(b'{"cmd": "version"}'))
    finally:
        await conn.close()


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
