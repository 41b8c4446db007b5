"""The soak's bookkeeping: what counts as lost, duplicated, retried; send → turn start from
the stream's frames; percentiles, growth, the fault schedule and the pass/fail lines."""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak_account import (
    Frame,
    HarnessTurn,
    Stored,
    account,
    growth_pct,
    pct,
    retry_windows,
    wake_latencies,
    window_median,
)
from bench.soak_faults import schedule
from bench.soak_report import checks

T = 1000.0


def stored(i: int, to: str = "s01", delivered: float | None = T + 10) -> Stored:
    return Stored(i, "operator", to, f"soak-{i:012x}", T, delivered)


def turn(
    ids: tuple[int, ...], started: float, ended: float | None, result: str | None
) -> HarnessTurn:
    return HarnessTurn("s01", f"t{started}", started, ended, result, ids)


def test_a_message_shown_once_and_acked_is_handled() -> None:
    got = account(
        [stored(1)], {1}, {1: [T + 1]}, [turn((1,), T + 0.5, T + 3, "success")], {}, set()
    )
    assert (got.sent, got.delivered, got.handled, got.lost, got.duplicated) == (1, 1, 1, [], [])


def test_never_shown_or_never_acked_is_lost() -> None:
    never_shown = account([stored(1)], {1}, {}, [], {}, set())
    never_acked = account([stored(2, delivered=None)], {2}, {2: [T + 1]}, [], {}, set())
    assert never_shown.lost == [1] and never_shown.delivered == 0
    assert never_acked.lost == [2] and never_acked.delivered == 1 and never_acked.handled == 0


def test_acknowledged_but_missing_from_the_database_is_lost() -> None:
    got = account([], {7}, {}, [], {}, set())
    assert got.sent == 1 and got.lost == [7]


def test_unconfirmed_messages_are_followed_but_not_counted_as_sent() -> None:
    got = account([stored(1, delivered=None)], set(), {}, [], {}, set())
    assert (got.sent, got.unconfirmed, got.lost) == (0, 1, [])


def test_a_retried_unfinished_turn_is_not_a_duplicate() -> None:
    turns = [turn((1,), T + 0.5, T + 2, "crashed"), turn((1,), T + 12, T + 14, "success")]
    got = account([stored(1, delivered=T + 14.1)], {1}, {1: [T + 1, T + 13]}, turns, {}, set())
    assert got.duplicated == [] and got.retried == 1 and got.lost == []


def test_a_turn_killed_before_it_recorded_its_end_is_not_a_duplicate() -> None:
    turns = [turn((1,), T + 0.5, None, None), turn((1,), T + 12, T + 14, "success")]
    got = account([stored(1, delivered=T + 14.1)], {1}, {1: [T + 1, T + 13]}, turns, {}, set())
    assert got.duplicated == [] and got.retried == 1


def test_shown_again_after_a_completed_turn_is_a_duplicate() -> None:
    turns = [turn((1,), T + 0.5, T + 3, "success"), turn((1,), T + 5, T + 7, "success")]
    got = account([stored(1, delivered=T + 7.1)], {1}, {1: [T + 1, T + 6]}, turns, {}, set())
    (dup,) = got.duplicated
    assert dup.id == 1 and "completed" in dup.why


def test_shown_again_after_its_ack_is_a_duplicate_whatever_the_faults() -> None:
    turns = [turn((1,), T + 0.5, T + 3, "success")]
    faults = {"*": [T + 4]}
    got = account([stored(1, delivered=T + 3.1)], {1}, {1: [T + 1, T + 6]}, turns, faults, set())
    (dup,) = got.duplicated
    assert "after its ack" in dup.why


SHOWN_TWICE = {1: [T + 1, T + 10]}


def test_a_kill_between_a_completed_turn_and_its_ack_redelivers() -> None:
    turns = [turn((1,), T + 0.5, T + 3, "success"), turn((1,), T + 9, T + 11, "success")]
    for faults in ({"s01": [T + 3.01]}, {"*": [T + 4]}):
        got = account([stored(1, delivered=T + 11.1)], {1}, SHOWN_TWICE, turns, faults, set())
        assert got.duplicated == [] and got.redelivered == [1]


def test_a_kill_of_another_agent_explains_nothing() -> None:
    turns = [turn((1,), T + 0.5, T + 3, "success"), turn((1,), T + 9, T + 11, "success")]
    faults = {"s02": [T + 4]}
    got = account([stored(1, delivered=T + 11.1)], {1}, SHOWN_TWICE, turns, faults, set())
    assert len(got.duplicated) == 1


def test_a_stop_mid_turn_records_cancelled_which_is_not_completed() -> None:
    turns = [turn((1,), T + 0.5, T + 2, "cancelled"), turn((1,), T + 9, T + 11, "success")]
    got = account([stored(1, delivered=T + 11.1)], {1}, {1: [T + 1, T + 10]}, turns, {}, set())
    assert got.duplicated == [] and got.retried == 1


def test_messages_to_the_operator_are_handled_once_read() -> None:
    read, unread = stored(1, to="operator"), stored(2, to="operator")
    got = account([read, unread], {1, 2}, {}, [], {}, {1})
    assert got.handled == 1 and got.lost == [2]


def state(
    at: float, agent: str, turn_state: str | None, st: str = "running", epoch: int = 1
) -> Frame:
    return Frame(epoch, int(at), at, "state", agent, state=st, turn_state=turn_state)


def sent(at: float, msg_id: int, agent: str, sender: str = "operator", epoch: int = 1) -> Frame:
    return Frame(epoch, int(at), at, "sent", agent, msg_id, sender, at - 0.002)


def test_wake_is_measured_from_sent_at_to_leaving_idle() -> None:
    frames = [state(T, "s01", "idle"), sent(T + 1, 1, "s01"), state(T + 1.5, "s01", "thinking")]
    assert wake_latencies(frames, {}, set()) == {1: pytest.approx(0.502)}


def test_a_turn_waiting_for_admission_has_not_started() -> None:
    frames = [
        state(T, "s01", "idle"), sent(T + 1, 1, "s01"), state(T + 1.1, "s01", "waiting"),
        sent(T + 2, 2, "s01"), state(T + 3, "s01", "thinking"),
    ]  # fmt: skip
    assert wake_latencies(frames, {}, set()) == {1: pytest.approx(2.002)}


def test_wake_leaves_out_busy_stopped_restarted_events_and_skipped() -> None:
    frames = [
        state(T, "s01", "thinking"), sent(T + 1, 1, "s01"),  # busy
        state(T, "s02", "idle"), sent(T + 1, 2, "s02", sender="hive"),  # a helper event
        sent(T + 1, 3, "s02"),  # skipped below
        state(T, "s03", "idle"), sent(T + 1, 4, "s03"), state(T + 2, "s03", None, "stopped"),
        state(T + 3, "s03", "thinking"),
        state(T, "s04", "idle"), sent(T + 1, 5, "s04"), state(T + 2, "s04", "thinking", epoch=2),
        state(T + 4, "s01", "idle"), state(T + 4, "s02", "thinking"),
    ]  # fmt: skip
    assert wake_latencies(frames, {}, {3}) == {}


def test_wake_leaves_out_sends_inside_an_excluded_window() -> None:
    frames = [state(T, "s01", "idle"), sent(T + 1, 1, "s01"), state(T + 9, "s01", "thinking")]
    assert wake_latencies(frames, {"s01": [(T + 0.5, T + 9)]}, set()) == {}


def test_retry_windows_run_from_a_failed_turn_to_the_next() -> None:
    turns = [
        turn((1,), T, T + 2, "crashed"), turn((1,), T + 12, T + 14, "success"),
        turn((2,), T + 20, T + 21, "api_error"),
    ]  # fmt: skip
    assert retry_windows(turns, {"crashed", "api_error"}) == {
        "s01": [(T + 2, T + 12), (T + 21, float("inf"))]
    }


def test_percentiles_and_growth() -> None:
    assert pct([], 99) is None
    assert pct([3.0, 1.0, 2.0], 50) == 2.0
    samples = [(float(t), 100.0 if t < 50 else 112.0) for t in range(100)]
    assert window_median(samples, 0, 10) == 100.0
    assert window_median(samples, 200, 300) is None
    assert growth_pct(samples, (10, 20), (90, 99)) == pytest.approx(12.0)
    assert growth_pct(samples, (200, 210), (90, 99)) is None


@pytest.mark.parametrize(("seconds", "kills", "stops"), [(120, 2, 1), (1200, 6, 3)])
def test_the_fault_schedule(seconds: float, kills: int, stops: int) -> None:
    plan = schedule(seconds)
    kinds = [k for _, k in plan]
    assert kinds.count("kill_harness") == kinds.count("kill_claude") == kills
    assert kinds.count("stop_start") == stops and kinds.count("restart") == 1
    assert (seconds / 2, "restart") in plan
    assert [t for t, _ in plan] == sorted(t for t, _ in plan)
    assert plan[0][0] > 0 and plan[-1][0] < seconds


def figures(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "lost": 0, "duplicated": 0, "questions_reached": 3, "questions_answered": 3,
        "questions_unreached": [], "wake_p99_s": 1.2, "state_p99_ms": 40.0,
        "stream_lag_p99_ms": 30.0, "daemon_rss_growth_pct": 2.0, "daemon_fds_growth_pct": 0.0,
        "orphans": 0, "restart_all_back_s": 4.0,
    }  # fmt: skip
    return {**base, **changes}


def test_every_line_passes_within_its_target() -> None:
    lines = checks(figures())
    assert len(lines) == 10 and all(c.ok for c in lines)
    assert lines[0].line() == "PASS  lost: 0 (target: 0)"


@pytest.mark.parametrize(
    "change",
    [
        {"lost": 1}, {"duplicated": 2}, {"questions_unreached": [4]}, {"wake_p99_s": 2.01},
        {"wake_p99_s": None}, {"state_p99_ms": 100.1}, {"stream_lag_p99_ms": 251.0},
        {"daemon_rss_growth_pct": 10.5}, {"daemon_fds_growth_pct": None}, {"orphans": 1},
        {"restart_all_back_s": 10.2},
    ],
)  # fmt: skip
def test_a_line_fails_past_its_target_or_without_samples(change: dict[str, Any]) -> None:
    failed = [c for c in checks(figures(**change)) if not c.ok]
    assert len(failed) == 1 and failed[0].line().startswith("FAIL  ")
