"""The one output format: `name: value (baseline: value, ratio: x, target: y)`.

Result lines go to stdout; progress notes go to stderr so stdout stays parseable.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

NONE = "-"
"""Printed where a line has no baseline, ratio or target."""


@dataclass(frozen=True)
class Line:
    name: str
    value: str
    baseline: str = NONE
    ratio: str = NONE
    target: str = NONE

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.value} "
            f"(baseline: {self.baseline}, ratio: {self.ratio}, target: {self.target})"
        )


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


def latency(name: str, value: float, baseline: float, target: str = NONE) -> Line:
    """A latency line; value and baseline (seconds) share one unit, ms from 1 ms up."""
    unit = "ms" if max(value, baseline) >= 1e-3 else "µs"
    return Line(
        name, _duration(value, unit), _duration(baseline, unit), ratio(value, baseline), target
    )


def duration(name: str, value: float, target: str = NONE) -> Line:
    """A latency line with no baseline (an informational floor)."""
    return Line(name, _duration(value, "ms" if value >= 1e-3 else "µs"), target=target)


def rate(name: str, value: float, baseline: float, target: str = NONE) -> Line:
    """A throughput line in messages per second."""
    return Line(name, f"{value:.0f} msg/s", f"{baseline:.0f} msg/s", ratio(value, baseline), target)


def cpu_percent(name: str, value: float, target: str = NONE) -> Line:
    """A CPU line in % of one core; its baseline (0 %) is shown as `-`."""
    return Line(name, f"{value:.2f} %", target=target)


def mebibytes(name: str, size: int, baseline: int | None = None, target: str = NONE) -> Line:
    """A size line in MiB, against an optional baseline size."""
    base = NONE if baseline is None else f"{baseline / 2**20:.1f} MiB"
    r = NONE if not baseline else ratio(size, baseline)
    return Line(name, f"{size / 2**20:.1f} MiB", base, r, target)


def frames(name: str, count: int, target: str = NONE) -> Line:
    """A count of WAL frames (pages)."""
    return Line(name, f"{count} frames", target=target)


def emit(line: Line) -> None:
    print(line, flush=True)


def note(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
