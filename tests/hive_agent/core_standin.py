"""A stand-in for hive-core's agent socket, answering from threads of its own (so none of its
work is a task of the event loop under test): what a harness asks, recorded; the answers a
test chooses per verb, else what hive-core would answer.
"""

from __future__ import annotations

import json
import select
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hive_share import framing
from hive_share import responses as rs
from hive_share.models import Message, WireModel

BOUND = 30.0
"""Seconds any one wait of a test may take."""

Answer = Callable[[dict[str, Any]], WireModel]


class StandInCore(socketserver.ThreadingUnixStreamServer):
    """hive-core's agent socket: `alive`, `recv` (one message of `inbox`, else a long-poll
    that ends when the harness hangs up), `ack`, the reports, `watch_limits` (hive-core's
    defaults), `get_open_threads`, and whatever `answers` says instead."""

    daemon_threads = True

    def __init__(self, path: Path, answers: dict[str, Answer] | None = None) -> None:
        super().__init__(str(path), _Connection)
        self.answers = dict(answers or {})
        self.inbox: list[Message] = []
        self.requests: list[dict[str, Any]] = []
        self._changed = threading.Condition()

    def seen(self, cmd: str) -> list[dict[str, Any]]:
        """The requests of verb `cmd` so far, in the order they came."""
        with self._changed:
            return [r for r in self.requests if r["cmd"] == cmd]

    def wait_for(self, done: Callable[[StandInCore], bool], what: str) -> None:
        """Block until `done(self)` holds; fail after BOUND."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(self), timeout=BOUND):
                raise AssertionError(f"the stand-in hive-core never saw {what}: {self.requests}")

    def record(self, req: dict[str, Any]) -> None:
        with self._changed:
            self.requests.append(req)
            self._changed.notify_all()

    def answer(self, req: dict[str, Any], conn: Any) -> WireModel | None:
        cmd = req["cmd"]
        if cmd in self.answers:
            return self.answers[cmd](req)
        match cmd:
            case "alive" | "turn_state" | "login_state" | "set_status" | "stuck" | "turn_usage":
                return rs.Done(detail="noted")
            case "turn_slot":
                return rs.TurnSlotState(granted=True, running=1, slots=4)
            case "watch_limits":
                return rs.WatchLimits(no_progress_seconds=600.0, repeat=5, burn_tokens=2_000_000)
            case "recv":  # one message at a time, as if each came after the last turn
                if self.inbox:
                    return rs.Messages(messages=[self.inbox.pop(0)])
                if not req.get("wait_seconds"):
                    return rs.Messages(messages=[])
                select.select([conn], [], [], req["wait_seconds"])
                return None  # the harness hung up (or the wait ran out: it asks again)
            case "ack":
                return rs.Acked(count=len(req["ids"]))
            case "get_open_threads":
                return rs.OpenThreads(approvals=[], questions=[], pending_reminders=0)
        return rs.Error(code="unknown_verb", error=cmd)


class _Connection(socketserver.StreamRequestHandler):
    server: StandInCore

    def handle(self) -> None:
        for line in self.rfile:
            req = json.loads(line)
            self.server.record(req)
            answer = self.server.answer(req, self.connection)
            if answer is None:
                return
            self.wfile.write(framing.encode_model(answer))


@contextmanager
def standing_in(path: Path, answers: dict[str, Answer] | None = None) -> Iterator[StandInCore]:
    """A stand-in listening on `path` for the block; gone (the path too) after it."""
    core = StandInCore(path, answers)
    serving = threading.Thread(target=core.serve_forever, args=(0.02,), daemon=True)
    serving.start()
    try:
        yield core
    finally:
        core.shutdown()
        core.server_close()
        serving.join(BOUND)
        path.unlink(missing_ok=True)


def refuse(code: rs.ErrorCode) -> Answer:
    """An answer that refuses any request with `code`."""
    return lambda req: rs.Error(code=code, error=f"{req['cmd']}: refused")
