"""The harness's waits and backoffs: a failed turn's retry (RETRY_BASE doubling up to
RETRY_MAX; the turn loop waits it out in a cancel scope that a cancel or a shutdown
cancels) and the reconnect to a lost hive-core."""

from __future__ import annotations

import anyio

RETRY_BASE = 10.0
"""Seconds before the first retry of a turn that failed in a retryable way."""
RETRY_MAX = 300.0
"""The longest wait between two retries."""
RECONNECT_FIRST = 0.2
"""Seconds before the first reconnect to hive-core."""
RECONNECT_MAX = 10.0
"""The longest wait between two reconnects."""


def next_retry(delay: float) -> float:
    """The wait after `delay`: twice as long, at most RETRY_MAX."""
    return min(delay * 2, RETRY_MAX)


def next_reconnect(delay: float) -> float:
    """The wait after `delay`: twice as long, at most RECONNECT_MAX."""
    return min(delay * 2, RECONNECT_MAX)


async def wait_or_stop(stopping: anyio.Event, seconds: float) -> bool:
    """Wait `seconds` unless stopping is set first; True if stopping."""
    with anyio.move_on_after(seconds):
        await stopping.wait()
    return stopping.is_set()
