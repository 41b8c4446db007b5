"""Real local receivers for notifications: an HTTP server on loopback that records what
Apprise's `json://` and `ntfy://` URLs post (or answers 500, or hangs), and `aiosmtpd` on
loopback for `mailto://`."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

BOUND = 10.0
"""Seconds a test waits for a receiver to get what it expects."""


@dataclass
class Receiver:
    """What an HTTP receiver got, and how it answers."""

    port: int = 0
    got: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    """Each request's headers, in the order of `got`."""
    status: int = 200
    hang: threading.Event | None = None
    """When set up, each request waits until it is set (a receiver that hangs)."""
    changed: threading.Condition = field(default_factory=threading.Condition)

    def url(self, scheme: str = "json", path: str = "/hook", query: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def wait_for(self, count: int, bound: float = BOUND) -> list[tuple[str, dict[str, Any]]]:
        """The first `count` requests, once there are that many (fails after `bound`)."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.got) >= count, timeout=bound):
                raise AssertionError(f"got {len(self.got)} requests, expected {count}")
            return list(self.got[:count])


@contextmanager
def http_receiver(status: int = 200, hang: bool = False) -> Iterator[Receiver]:
    receiver = Receiver(status=status, hang=threading.Event() if hang else None)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size)
            if receiver.hang is not None:
                receiver.hang.wait(BOUND)
            with receiver.changed:
                receiver.got.append((self.path, json.loads(body or b"{}")))
                receiver.headers.append(dict(self.headers.items()))
                receiver.changed.notify_all()
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hang is not None:
            receiver.hang.set()
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    port: int = 0
    mails: list[tuple[str, list[str], str]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, bound: float = BOUND) -> list[tuple[str, list[str], str]]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.mails) >= count, timeout=bound):
                raise AssertionError(f"got {len(self.mails)} mails, expected {count}")
            return list(self.mails[:count])


@contextmanager
def mail_server() -> Iterator[Mailbox]:
    """`aiosmtpd` on a loopback port, keeping every mail it is handed."""
    box = Mailbox()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            text = envelope.content.decode("utf-8", errors="replace")
            with box.changed:
                box.mails.append((envelope.mail_from, list(envelope.rcpt_tos), text))
                box.changed.notify_all()
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd needs its port up front
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
