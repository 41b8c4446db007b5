"""The dashboard listener: port file, one-time login links, sessions, Host checks, headers."""

from __future__ import annotations

import http.client
import json
import os
import pty
import re
import select
import socket
import time

import pytest

from tests.e2e.hive import Hive

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
BANNER_BOUND = 30.0


Response = tuple[int, dict[str, str], bytes]


def request(
    port: int,
    method: str,
    path: str,
    host: str | None = None,
    token: str | None = None,
    body: dict[str, str] | None = None,
    cookie: str | None = None,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    headers = {"Host": host or f"127.0.0.1:{port}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    if body is not None:
        headers.update({"X-Hive-Request": "1", "Content-Type": "application/json"})
    try:
        conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get(port: int, path: str, host: str | None = None, token: str | None = None) -> Response:
    return request(port, "GET", path, host, token)


def redeem(port: int, code: str, host: str | None = None) -> Response:
    """Trade a login code as the login page's script does."""
    return request(port, "POST", "/api/session", host, body={"code": code})


def dashboard_port(hive: Hive) -> int:
    return int((hive.run_dir / "dashboard.port").read_text())


def login_code(hive: Hive) -> str:
    link = hive.cli("login-link")
    assert link.returncode == 0, link.stderr
    match = re.search(r"/login\?code=([\w-]+)", link.stdout)
    assert match is not None, link.stdout
    return match.group(1)


def test_port_zero_binds_a_free_port_and_writes_it_to_the_run_dir(hive: Hive) -> None:
    port = dashboard_port(hive)
    assert port > 0
    assert get(port, "/healthz")[0] == 200
    banner = hive.log()
    assert f"dashboard: http://127.0.0.1:{port}/" in banner
    assert hive.stop() == 0
    assert not (hive.run_dir / "dashboard.port").exists()


def test_without_a_terminal_the_banner_says_how_to_get_a_link_and_holds_no_code(
    hive: Hive,
) -> None:
    # Under systemd stdout is the journal: a login code there is a credential on disk.
    banner = hive.log()
    assert "login:     run `hive-core login-link` for a one-time link" in banner
    assert "code=" not in banner


def read_until(fd: int, marker: str) -> str:
    """Read a pty until `marker` and the end of its line appeared (bounded)."""
    out = b""
    deadline = time.monotonic() + BANNER_BOUND
    while True:
        text = out.decode(errors="replace")
        at = text.find(marker)
        if at >= 0 and "\n" in text[at:]:
            return text
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            raise AssertionError(f"no {marker!r} on the terminal; got:\n{text}")
        out += os.read(fd, 4096)


def test_on_a_terminal_the_banner_prints_a_working_login_link(idle_hive: Hive) -> None:
    controller, terminal = pty.openpty()
    try:
        try:
            idle_hive.start(stdout=terminal)
        finally:
            os.close(terminal)
        banner = read_until(controller, "login:")
        port = dashboard_port(idle_hive)
        match = re.search(rf"login: +http://127\.0\.0\.1:{port}/login\?code=([\w-]+) ", banner)
        assert match is not None, banner
        assert redeem(port, match.group(1))[0] == 200
        assert idle_hive.stop() == 0
    finally:
        os.close(controller)


def test_state_needs_a_session_from_a_one_time_login_link(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    port = dashboard_port(hive)
    assert get(port, "/api/state")[0] == 401
    assert get(port, "/api/state", token="v1.9999999999.00.guessed")[0] == 401
    code = login_code(hive)
    # Opening the link serves the login page and spends nothing (a link preview cannot
    # burn it); the page's script trades the code, and no cookie is ever set.
    status, headers, page = get(port, f"/login?code={code}")
    assert status == 200 and b"/assets/front/login.js" in page and "set-cookie" not in headers
    status, headers, body = redeem(port, code)
    assert status == 200 and "set-cookie" not in headers, body
    token = json.loads(body)["token"]
    assert request(port, "GET", "/api/state", cookie=f"hive_session={token}")[0] == 401
    status, headers, body = get(port, "/api/state", token=token)
    assert status == 200 and headers["cache-control"] == "no-store"
    state = json.loads(body)
    assert {a["name"] for a in state["agents"]} == {"hm1nd", "alice"}
    assert state["seq"] >= 1 and state["approvals"] == [] and state["inbox"] == []
    assert state["questions"] == [] and state["transients"] == []
    assert state["messages"] == [] and state["more_messages"] is False
    # The code was single-use.
    status, _, body = redeem(port, code)
    assert status == 403 and b"hive-core login-link" in body
    assert get(port, "/api/session", token=token)[0] == 200
    assert get(port, "/api/session")[0] == 401


def test_a_foreign_host_header_is_refused(hive: Hive) -> None:
    port = dashboard_port(hive)
    assert get(port, "/healthz", host=f"evil.example:{port}")[0] == 421
    assert get(port, "/healthz", host="127.0.0.1:1")[0] == 421
    assert get(port, "/healthz", host=f"localhost:{port}")[0] == 200


def test_a_dashboard_port_in_use_stops_startup_with_a_clear_message(idle_hive: Hive) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = idle_hive.cli("serve", "--dashboard-port", str(port))
    assert result.returncode == 1
    assert "cannot bind the dashboard" in result.stderr and "HIVE_DASHBOARD_PORT" in result.stderr


def test_every_response_carries_the_security_headers(hive: Hive) -> None:
    port = dashboard_port(hive)
    code = login_code(hive)
    responses = {
        "ok": get(port, "/healthz"),
        "login page": get(port, f"/login?code={code}"),
        "login": redeem(port, code),
        "used code": redeem(port, code),
        "no session": get(port, "/api/state"),
        "no such route": get(port, "/nope"),
        "foreign host": get(port, "/healthz", host=f"evil.example:{port}"),
    }
    statuses = {what: status for what, (status, _, _) in responses.items()}
    assert statuses == {
        "ok": 200, "login page": 200, "login": 200, "used code": 403, "no session": 401,
        "no such route": 404, "foreign host": 421,
    }  # fmt: skip
    for what, (_, headers, _) in responses.items():
        got = {name: headers.get(name) for name in SECURITY_HEADERS}
        assert got == SECURITY_HEADERS, what


def test_a_bind_beyond_loopback_without_allowed_hosts_is_refused(idle_hive: Hive) -> None:
    result = idle_hive.cli("serve", "--dashboard-host", "0.0.0.0")
    assert result.returncode == 1
    assert result.stderr.startswith("hive-core: cannot start: ")
    assert "0.0.0.0" in result.stderr and "HIVE_DASHBOARD_ALLOWED_HOSTS" in result.stderr
    assert not (idle_hive.state_dir / "hive.sqlite").exists()


@pytest.mark.parametrize("hosts", ["hive.example.net:7357", "http://hive.example.net", "0.0.0.0"])
def test_a_bad_allowed_host_is_refused_naming_the_setting(idle_hive: Hive, hosts: str) -> None:
    result = idle_hive.cli("serve", "--dashboard-allowed-hosts", hosts)
    assert result.returncode == 1
    assert "bad setting --dashboard-allowed-hosts" in result.stderr, result.stderr


@pytest.fixture
def wide_hive(idle_hive: Hive) -> Hive:
    """A daemon whose dashboard listens on every address, for two allowed names."""
    idle_hive.extra_env.update(
        HIVE_DASHBOARD_HOST="0.0.0.0", HIVE_DASHBOARD_ALLOWED_HOSTS="Hive.Test,192.0.2.7"
    )
    idle_hive.start()
    return idle_hive


def test_beyond_loopback_the_allowed_names_are_served_and_linked(wide_hive: Hive) -> None:
    port = dashboard_port(wide_hive)
    banner = wide_hive.log()
    assert f"dashboard: http://hive.test:{port}/" in banner
    assert "0.0.0.0:" not in banner
    link = wide_hive.cli("login-link").stdout
    assert link.startswith(f"http://hive.test:{port}/login?code="), link
    for host in (f"hive.test:{port}", f"HIVE.TEST:{port}", f"192.0.2.7:{port}"):
        assert get(port, "/healthz", host=host)[0] == 200, host
    for host in (f"0.0.0.0:{port}", f"evil.example:{port}", "hive.test:1", "hive.test"):
        assert get(port, "/healthz", host=host)[0] == 421, host
    code = login_code(wide_hive)
    assert redeem(port, code, host=f"hive.test:{port}")[0] == 200
