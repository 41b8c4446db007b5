from __future__ import annotations

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
    assert header.split()[-1] == "LOGIN"
    assert alice.split()[-1] == "claude_missing"
    assert bob.split()[-1] == "-"


def test_approvals_show_their_age() -> None:
    approval = Approval(
        id=4,
        kind="spawn",
        agent="bob",
        requester="hm1nd",
        status="pending",
        created_at=100.0,
    )
    out = render.approvals([approval], now=100.0 + 125)
    assert out.splitlines()[1].split() == ["4", "spawn", "bob", "hm1nd", "2m05s"]
