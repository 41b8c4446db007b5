"""The dashboard listener: port file, one-time login links, sessions, Host checks."""

from __future__ import annotations

import http.client
import json
import re
import socket

from tests.e2e.hive import Hive


def get(
    port: int, path: str, host: str | None = None, cookie: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    headers = {"Host": host or f"127.0.0.1:{port}"}
    if cookie:
        headers["Cookie"] = cookie
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def dashboard_port(hive: Hive) -> int:
    return int((hive.run_dir / "dashboard.port").read_text())


def test_port_zero_binds_a_free_port_and_writes_it_to_the_run_dir(hive: Hive) -> None:
    port = dashboard_port(hive)
    assert port > 0
    assert get(port, "/healthz")[0] == 200
    banner = hive.log()
    assert f"dashboard: http://127.0.0.1:{port}/" in banner
    assert f"http://127.0.0.1:{port}/login?code=" in banner
    assert hive.stop() == 0
    assert not (hive.run_dir / "dashboard.port").exists()


def test_state_needs_a_session_from_a_one_time_login_link(hive: Hive) -> None:
    assert hive.cli("spawn", "alice").returncode == 0
    port = dashboard_port(hive)
    assert get(port, "/api/state")[0] == 401
    assert get(port, "/api/state", cookie="hive_session=guessed")[0] == 401
    link = hive.cli("login-link")
    assert link.returncode == 0, link.stderr
    match = re.search(r"/login\?code=([\w-]+)", link.stdout)
    assert match is not None, link.stdout
    status, headers, _ = get(port, f"/login?code={match.group(1)}")
    assert status == 303
    cookie_header = headers["set-cookie"]
    assert "httponly" in cookie_header.lower() and "samesite=strict" in cookie_header.lower()
    cookie = cookie_header.split(";")[0]
    status, headers, body = get(port, "/api/state", cookie=cookie)
    assert status == 200 and headers["cache-control"] == "no-store"
    state = json.loads(body)
    assert {a["name"] for a in state["agents"]} == {"hm1nd", "alice"}
    assert state["seq"] >= 1 and state["approvals"] == [] and state["inbox"] == []
    # The code was single-use.
    assert get(port, f"/login?code={match.group(1)}")[0] == 403


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
