"""Login codes and signed sessions: one use per code, sessions that outlive a restart."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hive_core.dashboard import auth
from hive_core.dashboard.auth import Credentials, load_key
from hive_core.errors import StartupError


def test_a_code_works_once_and_its_session_survives_a_new_process(tmp_path: Path) -> None:
    key = load_key(tmp_path / "dashboard.key")
    creds = Credentials(key)
    code = creds.new_code()
    token = creds.redeem(code)
    assert token is not None and creds.redeem(code) is None
    assert Credentials(load_key(tmp_path / "dashboard.key")).valid_session(token)
    assert not Credentials(os.urandom(32)).valid_session(token)  # another key
    assert stat.S_IMODE((tmp_path / "dashboard.key").stat().st_mode) == 0o600


def test_a_forged_tampered_or_expired_session_is_refused(tmp_path: Path) -> None:
    now = [1_000_000.0]
    creds = Credentials(load_key(tmp_path / "k"), lambda: now[0])
    token = creds.redeem(creds.new_code())
    assert token is not None
    version, expires, nonce, mac = token.split(".")
    forged = [
        "", "v1", "guessed", f"{version}.{int(expires) + 1}.{nonce}.{mac}",
        f"{version}.{expires}.{nonce}.{'0' * len(mac)}", token + "0", "x" * 500,
    ]  # fmt: skip
    assert [t for t in forged if creds.valid_session(t)] == []
    assert creds.valid_session(token)
    now[0] += auth.SESSION_TTL + 1
    assert not creds.valid_session(token)


def test_a_key_file_that_is_a_symlink_or_the_wrong_size_stops_the_start(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(os.urandom(32))
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(StartupError, match="remove it"):
        load_key(tmp_path / "link")
    (tmp_path / "short").write_bytes(b"abc")
    with pytest.raises(StartupError, match="32-byte key file"):
        load_key(tmp_path / "short")


def test_a_send_token_opens_one_agents_send_and_is_no_session(tmp_path: Path) -> None:
    now = [1_000_000.0]
    creds = Credentials(load_key(tmp_path / "k"), lambda: now[0])
    token = creds.send_token("alice")
    assert creds.valid_send(token, "alice")
    assert not creds.valid_send(token, "bob") and not creds.valid_session(token)
    assert not Credentials(os.urandom(32)).valid_send(token, "alice")
    kind, _, expires, nonce, mac = token.split(".")
    assert [
        t for t in (f"{kind}.bob.{expires}.{nonce}.{mac}", f"v1.{expires}.{nonce}.{mac}")
        if creds.valid_send(t, "bob") or creds.valid_session(t)
    ] == []  # fmt: skip
    session = creds.redeem(creds.new_code())
    assert creds.valid_send(session, "bob")  # the operator's session may send anywhere
    now[0] += auth.SESSION_TTL + 1
    assert not creds.valid_send(token, "alice")


def test_the_send_token_hive_core_mints_is_signed_with_the_dashboard_key(tmp_path: Path) -> None:
    token = auth.send_token(tmp_path, "alice")
    assert Credentials(load_key(tmp_path / auth.KEY_FILE)).valid_send(token, "alice")


def test_a_stream_ticket_works_once_and_only_while_fresh() -> None:
    from hive_share.sessions import MAX_TICKETS, Tickets

    tickets = Tickets()
    first = tickets.issue()
    assert tickets.take(first) and not tickets.take(first)
    assert not tickets.take("") and not tickets.take(None) and not tickets.take("x" * 500)
    many = [tickets.issue() for _ in range(MAX_TICKETS + 1)]
    assert not tickets.take(many[0])  # the oldest went first
    assert tickets.take(many[-1])


@pytest.mark.parametrize(
    ("scheme", "host", "coop"),
    [
        ("http", "127.0.0.1:7777", True),
        ("http", "localhost:7777", True),
        ("http", "[::1]:7777", True),
        ("https", "hive.example:443", True),
        ("http", "hive.example:7777", False),
        ("http", "192.0.2.7:7777", False),
    ],
)
def test_the_opener_policy_is_sent_only_where_a_browser_honours_it(
    scheme: str, host: str, coop: bool
) -> None:
    from hive_front import security_headers

    headers = security_headers(scheme, host)
    assert ("Cross-Origin-Opener-Policy" in headers) is coop
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
