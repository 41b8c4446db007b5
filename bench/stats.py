"""Percentiles of latency samples (nearest-rank, so every reported value was observed)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q ≤ 100) of non-empty `samples`.

    Raises:
        ValueError: `samples` is empty or `q` is out of range.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[rank - 1]


def p50(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def p90(samples: Sequence[float]) -> float:
    return percentile(samples, 90)


def p99(samples: Sequence[float]) -> float:
    return percentile(samples, 99)
