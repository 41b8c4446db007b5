"""The one output format: `name: value (baseline: value, ratio: x, target: y)`.

Result lines go to stdout; progress notes go to stderr so stdout stays parseable. A line
with a `Goal` is judged as it is emitted; `verdicts()` prints one `PASS:`/`FAIL:` line per
goal at the end of a run.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass

NONE = "-"
"""Printed where a line has no baseline, ratio or target."""


@dataclass(frozen=True)
class Goal:
    """What a line must show: its value (or, with `of_ratio`, its ratio to the baseline)
    compared with `limit` by `test`; `text` is how the target column reads."""

    text: str
    limit: float
    test: Callable[[float, float], bool]
    of_ratio: bool

    def met(self, value: float, baseline: float | None) -> bool:
        if self.of_ratio:
            if not baseline or baseline <= 0:
                return False  # no baseline to hold it to: not shown to be met
            return self.test(value / baseline, self.limit)
        return self.test(value, self.limit)


def ratio_at_most(limit: float, of: str = "") -> Goal:
    """At most `limit` times the baseline (`of` names the baseline in the target column)."""
    return Goal(f"≤ {limit}x{' ' + of if of else ''}", limit, operator.le, True)


def ratio_at_least(limit: float, of: str = "") -> Goal:
    return Goal(f"≥ {limit}x{' ' + of if of else ''}", limit, operator.ge, True)


def at_most(limit: float, text: str) -> Goal:
    """The value (in the line's own measure: seconds, %, bytes, frames) at most `limit`."""
    return Goal(text, limit, operator.le, False)


def below(limit: float, text: str) -> Goal:
    return Goal(text, limit, operator.lt, False)


@dataclass(frozen=True)
class Line:
    name: str
    value: str
    baseline: str = NONE
    ratio: str = NONE
    target: str = NONE
    met: bool | None = None
    """Whether the line meets its goal; None when it has none."""
    judged: str = NONE
    """What the goal judged: the ratio or the value."""

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.value} "
            f"(baseline: {self.baseline}, ratio: {self.ratio}, target: {self.target})"
        )


def _judged(line: Line, goal: Goal | None, value: float, baseline: float | None) -> Line:
    if goal is None:
        return line
    met = goal.met(value, baseline)
    judged = line.ratio if goal.of_ratio else line.value
    return Line(line.name, line.value, line.baseline, line.ratio, goal.text, met, judged)


def ratio(value: float, baseline: float) -> str:
    if baseline <= 0:
        return NONE
    r = value / baseline
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def _duration(seconds: float, unit: str) -> str:
    if unit == "ms":
        return f"{seconds * 1e3:.2f} ms"
    us = seconds * 1e6
    return f"{us:.1f} µs" if us < 100 else f"{us:.0f} µs"


def latency(name: str, value: float, baseline: float, goal: Goal | None = None) -> Line:
    """A latency line; value and baseline (seconds) share one unit, ms from 1 ms up."""
    unit = "ms" if max(value, baseline) >= 1e-3 else "µs"
    line = Line(name, _duration(value, unit), _duration(baseline, unit), ratio(value, baseline))
    return _judged(line, goal, value, baseline)


def duration(name: str, value: float, goal: Goal | None = None) -> Line:
    """A latency line with no baseline (an informational floor)."""
    line = Line(name, _duration(value, "ms" if value >= 1e-3 else "µs"))
    return _judged(line, goal, value, None)


def rate(name: str, value: float, baseline: float, goal: Goal | None = None) -> Line:
    """A throughput line in messages per second."""
    line = Line(name, f"{value:.0f} msg/s", f"{baseline:.0f} msg/s", ratio(value, baseline))
    return _judged(line, goal, value, baseline)


def cpu_percent(name: str, value: float, goal: Goal | None = None) -> Line:
    """A CPU line in % of one core; its baseline (0 %) is shown as `-`."""
    return _judged(Line(name, f"{value:.2f} %"), goal, value, None)


def mebibytes(name: str, size: int, baseline: int | None = None, goal: Goal | None = None) -> Line:
    """A size line in MiB, against an optional baseline size (a goal's limit is in bytes)."""
    base = NONE if baseline is None else f"{baseline / 2**20:.1f} MiB"
    r = NONE if not baseline else ratio(size, baseline)
    return _judged(Line(name, f"{size / 2**20:.1f} MiB", base, r), goal, size, baseline)


def frames(name: str, count: int, goal: Goal | None = None) -> Line:
    """A count of WAL frames (pages)."""
    return _judged(Line(name, f"{count} frames"), goal, count, None)


_JUDGED: list[Line] = []
"""The lines with a goal emitted so far, in order."""


def emit(line: Line) -> None:
    print(line, flush=True)
    if line.met is not None:
        _JUDGED.append(line)


def verdicts() -> bool:
    """Print a `PASS:` or `FAIL:` line per goal emitted so far; whether every goal was met."""
    for line in _JUDGED:
        verdict = "PASS" if line.met else "FAIL"
        print(f"{verdict}: {line.name}: {line.judged} (target: {line.target})")
    sys.stdout.flush()
    return all(line.met for line in _JUDGED)


def note(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
