"""The per-sender send throttle: a token bucket per sender of SEND_BURST messages, refilled
at SEND_RATE per second; the operator is never throttled (docs/coordination.md)."""

from __future__ import annotations

from dataclasses import dataclass

from hive_core.errors import Busy
from hive_share.names import OPERATOR

SEND_RATE = 20.0
"""Messages per second an agent may send, sustained."""
SEND_BURST = 200.0
"""Messages an agent may send in a burst before the rate applies."""


@dataclass
class _Bucket:
    tokens: float = SEND_BURST
    at: float = 0.0

    def take(self, now: float) -> bool:
        # A wall clock stepped backwards refills nothing rather than taking tokens away.
        self.tokens = min(SEND_BURST, self.tokens + max(0.0, now - self.at) * SEND_RATE)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class SendThrottle:
    """One bucket per sender, made at its first send."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def admits(self, sender: str, now: float) -> bool:
        """Whether `sender` may send at `now`, taking a token if so; the operator always may."""
        if sender == OPERATOR:
            return True
        return self._buckets.setdefault(sender, _Bucket(at=now)).take(now)


def too_fast(sender: str) -> Busy:
    """The error a sender past its burst gets."""
    return Busy(
        f"{sender} is sending faster than {SEND_RATE:.0f} messages/s after a burst "
        f"of {SEND_BURST:.0f}; slow down and retry"
    )
