"""systemd's notify protocol (`Type=notify`, `WatchdogSec=`), without a libsystemd dependency.

`READY=1`, `STATUS=…`, `WATCHDOG=1` and `STOPPING=1` go as datagrams to
`$NOTIFY_SOCKET`. Sends never block: the daemon sends from its event loop, and a
receiver that stops reading must not stall it (the datagram is dropped and logged).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """The daemon's line to systemd; does nothing when `notify_socket` is unset or empty."""

    def __init__(self, notify_socket: str | None) -> None:
        self.address = notify_socket or None
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send `assignments` (`READY=1`, `STATUS=…`) in one datagram; False when not under
        systemd or it failed. A failure is logged once until a send succeeds again."""
        if self.address is None:
            return False
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        state = "\n".join(assignments)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), socket.MSG_DONTWAIT, address)
        except OSError as exc:
            if not self._failing:
                logger.warning("sd_notify %r to %s failed: %s", state, self.address, exc)
            self._failing = True
            return False
        self._failing = False
        return True


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two `WATCHDOG=1` pings (half of `WATCHDOG_USEC`), or None when no
    watchdog is asked for, or it is meant for another process (`WATCHDOG_PID`)."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", usec)
        return None
    if value <= 0:
        logger.warning("ignoring WATCHDOG_USEC=%r: not a positive number", usec)
        return None
    return value / 2 / 1_000_000
