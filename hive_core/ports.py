"""Per-agent web ports: a hash of the name into a fixed range, probed on a collision; and
who listens on one (a bind probe, and /proc for whether it is the agent's harness)."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import struct
from collections.abc import Callable, Collection
from pathlib import Path

PORT_BASE = 42000
"""The default first port of the range (`HIVE_AGENT_PORT_BASE`)."""
PORT_RANGE = 1000


def hashed_port(name: str, base: int = PORT_BASE) -> int:
    """The first choice for agent `name`: same name, same port, on every host."""
    digest = hashlib.sha256(name.encode("ascii")).digest()
    return base + int.from_bytes(digest[:4], "big") % PORT_RANGE


def unprobed(port: int) -> bool:
    """Every port counts as free: the host is not looked at."""
    return True


def agent_web_port(
    name: str,
    taken: Collection[int] = (),
    base: int = PORT_BASE,
    free: Callable[[int], bool] = unprobed,
) -> int | None:
    """The hashed port of `name`, or when another agent holds it (or `free` refuses it) the
    next free one upwards (wrapping within the range); None when every port is taken.

    Deterministic for the same set of `taken` ports; the registry keeps the result,
    so an agent keeps its port even after the agent that pushed it aside is gone.
    """
    return _probe(hashed_port(name, base), taken, base, free)


def next_web_port(
    port: int,
    taken: Collection[int] = (),
    base: int = PORT_BASE,
    free: Callable[[int], bool] = unprobed,
) -> int | None:
    """The first port after `port` upwards (wrapping within the range) that is neither
    `taken` nor refused by `free`; never `port` itself. None when there is none."""
    return _probe(port + 1, {*taken, port}, base, free)


def _probe(
    first: int, taken: Collection[int], base: int, free: Callable[[int], bool]
) -> int | None:
    for step in range(PORT_RANGE):
        port = base + (first - base + step) % PORT_RANGE
        if port not in taken and free(port):
            return port
    return None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on `host:port` now (a bind succeeds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


_LOOPBACK = "127.0.0.1"
_WILDCARD = {"00000000", "00000000000000000000000000000000"}
_LISTEN = "0A"


def _proc_forms(address: str) -> set[str]:
    """An IPv4 address as /proc/net/tcp and tcp6 write it (plain and IPv4-mapped); none
    for another form (an IPv6 address is matched by the any-address only)."""
    try:
        packed = socket.inet_aton(address)
    except OSError:
        return set()
    (word,) = struct.unpack("<I", packed)
    return {f"{word:08X}", f"0000000000000000FFFF0000{word:08X}"}


def loopback_listeners(port: int, host: str = _LOOPBACK) -> set[int]:
    """The inodes of the sockets that take connections to `host`:`port` (an IPv4 address,
    or the any-address: a page binds where the dashboard listens) in this network
    namespace: those bound to that address, else those bound to every address."""
    exact_forms = set() if host in ("0.0.0.0", "::") else _proc_forms(host)
    exact: set[int] = set()
    wildcard: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path("/proc/net", table).read_text().splitlines()[1:]
        except FileNotFoundError:  # no IPv6
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != _LISTEN or int(hex_port, 16) != port:
                continue
            if address in exact_forms:
                exact.add(int(fields[9]))
            elif address in _WILDCARD:
                wildcard.add(int(fields[9]))
    return exact or wildcard


def holds(pid: int, inodes: Collection[int]) -> bool:
    """Whether process `pid` has one of the sockets `inodes` open.

    Raises: OSError (no such process, or its open files are not ours to read).
    """
    wanted = {f"socket:[{inode}]" for inode in inodes}
    fds = Path("/proc", str(pid), "fd")
    for fd in os.listdir(fds):
        try:
            if os.readlink(fds / fd) in wanted:
                return True
        except FileNotFoundError:  # closed meanwhile
            continue
    return False


def socket_owner(path: Path, limit: float = 5.0) -> int:
    """The pid, as this host numbers it, of the process listening on the unix socket `path`
    (a container's harness too): the peer credentials of a connection to it. Only a real
    socket is connected to.

    Raises: OSError (not a socket, nothing listens there, or no connection within `limit`).
    """
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise ConnectionRefusedError(f"{path} is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(limit)
        conn.connect(str(path))
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[0]
    return pid
