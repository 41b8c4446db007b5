"""systemd readiness notification (`Type=notify`), without a libsystemd dependency."""

from __future__ import annotations

import logging
import socket

logger = logging.getLogger(__name__)


def notify(state: str, notify_socket: str | None) -> bool:
    """Send `state` (e.g. `READY=1`) to systemd; False when not under systemd or it failed."""
    if not notify_socket:
        return False
    address = notify_socket
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        logger.warning("sd_notify %r to %s failed: %s", state, notify_socket, exc)
        return False
    return True
