"""`hive-agent mcp`: the stdio MCP endpoint claude launches each turn.

It only relays bytes between claude and the MCP server that lives, already
warm, inside the harness (`HIVE_MCP_SOCKET`), so it is ready in milliseconds
instead of paying the SDK's import on every turn. Standard library only.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys

BUFFER = 256 * 1024


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def relay(sock: socket.socket, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    """Copy stdin→socket and socket→stdout until the server closes its side."""
    with selectors.DefaultSelector() as sel:
        _pump(sel, sock, stdin_fd, stdout_fd)


def _pump(sel: selectors.BaseSelector, sock: socket.socket, stdin_fd: int, stdout_fd: int) -> None:
    sel.register(stdin_fd, selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in sel.select():
            if key.data == "in":
                data = os.read(stdin_fd, BUFFER)
                if data:
                    sock.sendall(data)
                else:
                    sel.unregister(stdin_fd)
                    sock.shutdown(socket.SHUT_WR)
            else:
                data = sock.recv(BUFFER)
                if not data:
                    return
                _write_all(stdout_fd, data)


def main() -> int:
    # claude ends its MCP servers with SIGINT; leave without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    path = os.environ.get("HIVE_MCP_SOCKET")
    if not path:
        print("hive-agent mcp: HIVE_MCP_SOCKET is not set", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        print(f"hive-agent mcp: cannot reach the harness at {path}: {exc}", file=sys.stderr)
        return 1
    try:
        relay(sock)
    except (BrokenPipeError, ConnectionError):
        return 0
    finally:
        sock.close()
    return 0


def command() -> list[str]:
    """How claude runs this relay: this file as a script, `-I -S` (no site-packages, no
    `PYTHON*` variables): it needs the standard library only, and skipping `site` saves a
    fifth of an interpreter's start on every turn."""
    return [sys.executable, "-I", "-S", os.path.abspath(__file__)]


if __name__ == "__main__":
    sys.exit(main())
