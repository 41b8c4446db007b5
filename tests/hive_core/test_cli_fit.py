"""`list`'s table fitted to the terminal: cut and left out step by step, never past what it
must keep, and the room a left-out column made given back."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hive_core import render
from hive_core.cli.common import fit
from hive_core.cli.lifecycle import LIST_FIT

KEPT = {"NAME", "STATE", "TURN", "HARNESS", "STATUS"}


def agent(name: str, status: str, **fields: object) -> SimpleNamespace:
    row: dict[str, object] = {
        "name": name, "role": "agent", "state": "running", "pid": 4242, "uptime_seconds": 3700,
        "web_port": 42001, "alive": True, "stuck": [], "login": "logged_in", "login_since": None,
        "login_expires_at": None, "model": "claude-sonnet-4-5", "model_source": "override",
        "deployed_commit": "4b8e1f0a9c2d7e", "turn_state": "thinking", "status": status,
    }  # fmt: skip
    row.update(fields)
    return SimpleNamespace(**row)


ROWS = [
    agent("hm1nd", "watching 40 agents", role="manager", turn_state="idle"),
    agent("checkout", "bisecting the flaky test_checkout_total, round 7 of 12 " * 3),
    agent("perf", "", state="stopped", pid=None, uptime_seconds=None, turn_state=None),
]


def table(width: int | None) -> tuple[list[str], list[str]]:
    headers, rows = fit(render.AGENT_COLUMNS, render.agent_cells(ROWS), width, LIST_FIT)  # type: ignore[arg-type]
    return headers, render.table(headers, rows).splitlines()


def test_without_a_width_nothing_is_cut() -> None:
    headers, lines = table(None)
    assert headers == render.AGENT_COLUMNS
    assert lines[2].endswith(ROWS[1].status.strip())


@pytest.mark.parametrize("width", [50, 60, 72, 80, 100, 120, 160, 200])
def test_each_width_is_met_keeping_the_columns_that_matter(width: int) -> None:
    headers, lines = table(width)
    assert max(len(line) for line in lines) <= width, lines
    assert set(headers) >= KEPT
    assert headers == [h for h in render.AGENT_COLUMNS if h in headers]  # the order stays
    status = lines[2][lines[0].index("STATUS") :]
    assert status.endswith("…") and ROWS[1].status.startswith(status[:-1])
    # No room is left unused while the status is cut.
    assert max(len(line) for line in lines) == width


def test_the_status_is_cut_before_any_column_is_left_out() -> None:
    headers, lines = table(190)
    assert headers == render.AGENT_COLUMNS
    assert max(len(line) for line in lines) == 190


def test_a_width_too_small_for_what_is_kept_keeps_it_all_the_same() -> None:
    headers, lines = table(20)
    assert set(headers) == KEPT
    assert lines[1].startswith("hm1nd ") and "thinking" in lines[2]
