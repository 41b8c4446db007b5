from __future__ import annotations

import time

import pytest

from hive_core import render
from hive_share.models import AgentInfo, Approval, Message


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        pytest.param("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", id="escape"),
        pytest.param("a\x00b", "a\\x00b", id="nul"),
        pytest.param("ring\x07", "ring\\x07", id="bell"),
        pytest.param("over\rwrite", "over\\x0dwrite", id="carriage-return"),
        pytest.param("two\nlines", "two\\x0alines", id="newline"),
        pytest.param("\x9b31m", "\\x9b31m", id="c1-csi"),
        pytest.param("abc\u202edcba", "abc\\u202edcba", id="bidi-override"),
        pytest.param("\u2066x\u2069", "\\u2066x\\u2069", id="bidi-isolate"),
        pytest.param("zero\u200bwidth", "zero\\u200bwidth", id="zero-width-space"),
        pytest.param("\ufeffbom", "\\ufeffbom", id="bom"),
        pytest.param("line\u2028sep", "line\\u2028sep", id="line-separator"),
    ],
)
def test_clean_escapes_control_and_invisible_characters(raw: str, shown: str) -> None:
    assert render.clean(raw) == shown


@pytest.mark.parametrize("text", ["plain", "café é", "日本語", "emoji 🐝", "tab-free text, 100%"])
def test_clean_keeps_ordinary_text(text: str) -> None:
    assert render.clean(text) == text


def test_clean_escapes_invisible_tag_characters_outside_the_basic_plane() -> None:
    smuggled = render.clean("ok\U000e0041\U000e0042")
    assert smuggled == "ok\\U000e0041\\U000e0042"


def test_clean_output_is_printable() -> None:
    hostile = "".join(chr(c) for c in range(0x20)) + "\x7f\u202e\u200b\u2028"
    assert render.clean(hostile).isprintable()


def test_clean_truncates_to_the_limit_with_an_ellipsis() -> None:
    assert render.clean("abcdefghij", 5) == "abcd…"
    assert render.clean("abcde", 5) == "abcde"


def test_table_pads_every_column_to_its_widest_cell() -> None:
    out = render.table(["ID", "NAME", "X"], [["1", "alice", "y"], ["200", "b", "zz"]])
    assert out.splitlines() == [
        "ID   NAME   X",
        "1    alice  y",
        "200  b      zz",
    ]


def test_table_columns_start_at_the_same_offset_on_every_line() -> None:
    out = render.table(["A", "B"], [["xxxxxx", "1"], ["y", "2"]])
    lines = out.splitlines()
    assert {line.index(v) for line, v in zip(lines, ["B", "1", "2"], strict=True)} == {8}
    assert all(line == line.rstrip() for line in lines)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (90061, "1d01h")],
)
def test_duration_is_compact(seconds: float | None, text: str) -> None:
    assert render.duration(seconds) == text


def test_messages_escape_hostile_bodies() -> None:
    msg = Message(id=1, sender="alice", recipient="operator", body="\x1b]0;pwned\x07", sent_at=0)
    out = render.messages([msg], now=30)
    assert "\x1b" not in out
    assert "\\x1b]0;pwned\\x07" in out
    assert "30s" in out


def test_empty_listings_say_so() -> None:
    assert render.agents([]) == "no agents"
    assert render.approvals([]) == "no pending approvals"
    assert render.messages([]) == "inbox is empty"


def test_agents_show_harness_liveness_only_for_running_agents() -> None:
    out = render.agents(
        [
            AgentInfo(name="alice", role="agent", state="running", pid=7, alive=True),
            AgentInfo(name="bob", role="agent", state="running", pid=8, alive=False),
            AgentInfo(name="carol", role="agent", state="tombstone"),
        ]
    )
    header, *lines = [line.split("  ") for line in out.splitlines()]
    cells = [[c.strip() for c in row if c.strip()] for row in [header, *lines]]
    harness = cells[0].index("HARNESS")
    assert [row[harness] for row in cells[1:3]] == ["alive", "not answering"]
    assert cells[3][0] == "carol" and cells[3][-1] == "-"


def test_agents_show_the_login_of_running_agents() -> None:
    out = render.agents(
        [
            AgentInfo(name="alice", role="agent", state="running", pid=7, login="claude_missing"),
            AgentInfo(name="bob", role="agent", state="stopped", login="needs_login"),
        ]
    )
    header, alice, bob = out.splitlines()
    at = header.index("LOGIN")
    assert alice[at:].split()[0] == "claude_missing"
    assert bob[at:].split()[0] == "-"


def test_agents_show_stuck_signals_and_how_long_a_login_has_been_wanting() -> None:
    now = time.time()
    rows = [
        AgentInfo(name="alice", role="agent", state="running", pid=7, alive=True,
                  stuck=["stuck_repetition", "ping_pong"], login="needs_login",
                  login_since=now - 125),
        AgentInfo(name="bob", role="agent", state="running", pid=8, alive=True,
                  login="logged_in", login_since=now - 9, login_expires_at=now + 7300),
    ]  # fmt: skip
    assert render.harness_of(rows[0]) == "alive, stuck: repetition ping_pong"
    assert render.login_of(rows[0]) in ("needs_login 2m05s", "needs_login 2m06s")
    assert render.login_of(rows[1]) in (
        "logged_in, expires in 2h01m",
        "logged_in, expires in 2h00m",
    )
    assert render.harness_of(rows[1]) == "alive"


def test_a_proposal_shows_a_diff_stat_and_its_commit() -> None:
    diff = (
        "diff --git a/agent.toml b/agent.toml\n--- a/agent.toml\n+++ b/agent.toml\n"
        '@@ -1 +1 @@\n-# x\n+model = "opus"\n'
    )
    a = Approval(id=5, kind="apply_commit", agent="bob", requester="hm1nd", status="pending",
                 created_at=0, commit="4b8e1f0a9c2d" * 3, diff=diff)  # fmt: skip
    assert render.approvals([a], now=60).splitlines()[1].endswith("1 file, +1 -1 (4b8e1f0a9c2d)")


def test_a_shown_diff_makes_hidden_characters_visible_and_warns() -> None:
    diff = '+model = "opus\u202e"\n+ok = 1\n'
    a = Approval(id=5, kind="apply_commit", agent="bob", requester="hm1nd", status="pending",
                 created_at=0, commit="4b8e1f0a9c2d", diff=diff)  # fmt: skip
    plain = render.approval(a, colour=False)
    assert "\u202e" not in plain and "\\u202e" in plain
    assert "WARNING: 1 diff lines" in plain
    assert "\x1b[" not in plain
    assert "\x1b[32m+ok = 1" in render.approval(a, colour=True)


def test_the_manager_changing_its_own_config_and_an_approval_under_way_are_said() -> None:
    own = Approval(id=6, kind="apply_commit", agent="hm1nd", requester="hm1nd",
                   status="in_progress", created_at=0, commit="4b8e1f0a9c2d",
                   diff="+x\n")  # fmt: skip
    other = own.model_copy(update={"agent": "bob", "status": "pending"})
    rows = render.approvals([own, other], now=60).splitlines()
    assert rows[1].endswith(
        "(4b8e1f0a9c2d); hm1nd proposes a change to its own config; approved, being carried out"
    )
    assert rows[2].endswith("(4b8e1f0a9c2d)")
    assert "hm1nd proposes a change to its own config" in render.approval(own, colour=False)
    assert "its own config" not in render.approval(other, colour=False)
