"""The bench's lines and their PASS/FAIL verdicts."""

from __future__ import annotations

import pytest

from bench import report


@pytest.fixture(autouse=True)
def fresh_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "_JUDGED", [])


def test_a_ratio_goal_judges_the_ratio_and_a_value_goal_the_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report.emit(report.rate("fast", 900, 1000, report.ratio_at_least(0.8, "floor")))
    report.emit(report.rate("slow", 700, 1000, report.ratio_at_least(0.8, "floor")))
    report.emit(report.latency("wake", 0.0013, 0.001, report.ratio_at_most(1.3)))
    report.emit(report.duration("fanout", 0.060, report.at_most(0.050, "≤ 50 ms")))
    report.emit(report.cpu_percent("idle", 0.5, report.below(1.0, "< 1%")))
    report.emit(report.cpu_percent("untargeted", 50.0))
    assert not report.verdicts()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("fast: 900 msg/s (baseline: 1000 msg/s, ratio: 0.90x, target: ≥ 0.8x floor)")
    assert out[-5:] == [
        "PASS: fast: 0.90x (target: ≥ 0.8x floor)",
        "FAIL: slow: 0.70x (target: ≥ 0.8x floor)",
        "PASS: wake: 1.30x (target: ≤ 1.3x)",
        "FAIL: fanout: 60.00 ms (target: ≤ 50 ms)",
        "PASS: idle: 0.50 % (target: < 1%)",
    ]


def test_every_goal_met_passes_and_a_missing_baseline_never_does() -> None:
    report.emit(report.frames("backlog", 0, report.at_most(0, "0 frames")))
    assert report.verdicts()
    report.emit(report.latency("no_floor", 0.001, 0.0, report.ratio_at_most(1.5)))
    assert not report.verdicts()
