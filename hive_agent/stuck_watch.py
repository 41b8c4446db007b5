"""The stuck watch: rules over what the harness sees of a running turn, and the `stuck`
reports they raise on the agent's hive-core socket (docs/attention.md, "Stuck signals").

No model judges: each signal is a deterministic rule, raised at most once per turn.

- `no_progress`: no new tool call and no text for `no_progress_seconds`. A timer task
  waits until the last progress plus the limit and re-arms when progress comes; progress
  after it fired is reported with `active` false.
- `repetition`: the same tool call (its name and its input as canonical JSON) `repeat`
  times in the turn, or the same error result (tool name and error text) `repeat` times
  in a row.
- `burn`: the turn's assistant messages spent `burn_tokens` (input + cache creation +
  output, as the stream shows them; cache reads are not counted) with no call that changed
  anything (`changes_something`).

`TurnWatch` is one turn's rules and does no I/O (the time is passed in); `StuckWatch` feeds
it from the harness's events and the runs' token spend, runs the timer, asks hive-core for
the limits (`watch_limits`) and sends the reports one after the other, off the turn's path.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc

from hive_share import live
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.base import StuckSignal
from hive_share.client import ClientError, HiveClient, RemoteError
from hive_share.live import LiveEvent

HiveSignal = Literal["ping_pong", "silent"]
"""The signals hive-core sees for an agent and tells its harness."""

logger = logging.getLogger(__name__)

REPORT_WAIT = 30.0
"""Seconds one report to hive-core (or the limits' question) may take before it is given up."""
DETAIL_MAX = 500
"""Characters of a report's detail (the wire's bound)."""
CHANGING_BUILTINS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit", "Bash"})
"""Built-ins whose successful call changed something: a file written or edited, a command
run."""
HIVE_TOOLS = "mcp__hyperhive__"
CHANGING_HIVE_TOOLS = frozenset(
    {"send", "answer", "ask", "remind", "request_spawn", "request_init_config",
     "request_apply_commit"}
)  # fmt: skip
"""The `hyperhive` tools whose successful call acted on the hive: a message, an answer, a
question, a reminder, or an approval asked of the operator."""


@dataclass(frozen=True)
class Limits:
    """The thresholds of the three signals (hive-core's `watch_limits`)."""

    no_progress_seconds: float = 600.0
    repeat: int = 5
    burn_tokens: int = 2_000_000


DEFAULT_LIMITS = Limits()
"""hive-core's own defaults (`HIVE_STUCK_*`): what a harness applies when hive-core cannot
say (an older hive-core answers `unknown_verb`)."""


def changes_something(tool: str) -> bool:
    """Whether a successful call of `tool` changed something (a burn does not count then)."""
    if tool in CHANGING_BUILTINS:
        return True
    return tool.startswith(HIVE_TOOLS) and tool[len(HIVE_TOOLS) :] in CHANGING_HIVE_TOOLS


def canonical(tool_input: Any) -> str:
    """A tool input as canonical JSON: the same call always reads the same."""
    return json.dumps(tool_input, sort_keys=True, separators=(",", ":"), default=str)


def tokens(count: int) -> str:
    """A token count for people: `950`, `12.5k`, `2.1M`."""
    for size, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if count >= size:
            return f"{round(count / size, 1):g}{unit}"
    return str(count)


def duration(seconds: float) -> str:
    """A duration for people: `45 s`, `10 min`, `2.5 h`."""
    if seconds < 120:
        return f"{round(seconds, 2):g} s"
    if seconds < 7200:
        return f"{round(seconds / 60, 1):g} min"
    return f"{round(seconds / 3600, 1):g} h"


def why(exc: BaseException) -> str:
    """A failed request to hive-core for the log: its error code when it answered one."""
    text = str(exc) or type(exc).__name__
    return f"{exc.code}: {text}" if isinstance(exc, RemoteError) else text


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(room - 1, 0)] + "…"


class TurnWatch:
    """One turn's stuck rules. Each `saw`/`spent`/`check` returns the reports it raises;
    each signal is raised at most once, and `no_progress` is cleared (a report with
    `active` false) by progress after it was raised."""

    def __init__(self, turn_id: str, limits: Limits, now: float) -> None:
        self.turn_id = turn_id
        self.limits = limits
        self.last_progress = now
        """When the turn last made progress: its start, a tool call or text."""
        self.raised: set[StuckSignal] = set()
        self.stalled = False
        """`no_progress` was raised and no progress came since."""
        self._calls: dict[str, int] = {}
        self._tools: dict[str, str] = {}
        """Tool name per tool-use id, for its result."""
        self._error: tuple[str, str] | None = None
        self._errors_in_a_row = 0
        self.spent_tokens = 0
        self.changed = False
        """A call of the turn changed something: no burn."""

    def deadline(self) -> float | None:
        """When `no_progress` is raised if nothing comes; None once it was raised."""
        if "no_progress" in self.raised:
            return None
        return self.last_progress + self.limits.no_progress_seconds

    def check(self, now: float) -> list[rq.ReportStuck]:
        """`no_progress` when its deadline has passed at `now`."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        self.stalled = True
        quiet = duration(self.limits.no_progress_seconds)
        return self._raise("no_progress", f"no tool call or text for {quiet}")

    def saw(self, event: LiveEvent, now: float) -> list[rq.ReportStuck]:
        """Feed one live event of the turn."""
        match event:
            case live.ToolUse(id=use_id, name=name, input=tool_input):
                self._tools[use_id] = name
                return self._progress(now, "a tool call") + self._call(name, tool_input)
            case live.Text(text=text) if text.strip():
                return self._progress(now, "text")
            case live.ToolResult(tool_use_id=use_id, content=content, is_error=is_error):
                return self._result(self._tools.get(use_id, "?"), content, is_error)
        return []

    def spent(self, count: int) -> list[rq.ReportStuck]:
        """Feed tokens the turn spent (one assistant message's input + cache creation +
        output)."""
        self.spent_tokens += count
        if self.changed or self.spent_tokens < self.limits.burn_tokens:
            return []
        return self._raise(
            "burn", f"{tokens(self.spent_tokens)} tokens, nothing written, run or sent"
        )

    def _progress(self, now: float, what: str) -> list[rq.ReportStuck]:
        self.last_progress = now
        if not self.stalled:
            return []
        self.stalled = False
        report = rq.ReportStuck(
            cmd="stuck", signal="no_progress", turn_id=self.turn_id,
            detail=f"{what} again", active=False,
        )  # fmt: skip
        return [report]

    def _call(self, name: str, tool_input: dict[str, Any]) -> list[rq.ReportStuck]:
        args = canonical(tool_input)
        key = f"{name} {args}"
        count = self._calls[key] = self._calls.get(key, 0) + 1
        if count < self.limits.repeat:
            return []
        tail = f" called {count} times"
        return self._raise("repetition", _cut(key, DETAIL_MAX - len(tail)) + tail)

    def _result(self, name: str, content: str, is_error: bool) -> list[rq.ReportStuck]:
        if not is_error:
            self._error, self._errors_in_a_row = None, 0
            self.changed = self.changed or changes_something(name)
            return []
        error = (name, content)
        self._errors_in_a_row = self._errors_in_a_row + 1 if error == self._error else 1
        self._error = error
        if self._errors_in_a_row < self.limits.repeat:
            return []
        head = f"{name} failed {self._errors_in_a_row} times in a row: "
        text = " ".join(content.split())  # one line, for the attention item
        return self._raise("repetition", head + _cut(text, DETAIL_MAX - len(head)))

    def _raise(self, signal: StuckSignal, detail: str) -> list[rq.ReportStuck]:
        if signal in self.raised:
            return []
        self.raised.add(signal)
        return [
            rq.ReportStuck(
                cmd="stuck", signal=signal, turn_id=self.turn_id, detail=_cut(detail, DETAIL_MAX)
            )
        ]


class StuckWatch:
    """Watches the harness's turns: `turn()` around each, `saw` for its events, `spent` for
    its tokens. Reports go to hive-core in the order they were raised, each a bounded
    request in a task of `tasks` (the harness's group); a failed one is logged and dropped
    (the signal describes the turn as it was, and the turn's end clears it anyway)."""

    def __init__(
        self,
        socket: Path,
        tasks: anyio.abc.TaskGroup,
        on_change: Callable[[list[StuckSignal | HiveSignal]], object] = lambda signals: None,
    ) -> None:
        self._socket = socket
        self._tasks = tasks
        self._on_change = on_change
        """Told the signals active in the running turn whenever they change."""
        self.active: list[StuckSignal] = []
        """The signals raised in the running turn and not over."""
        self.hive: list[HiveSignal] = []
        """The signals hive-core sees for this agent (`hive_signals`)."""
        self.limits = DEFAULT_LIMITS
        """What hive-core last said; its defaults until it said anything."""
        self._told_fallback = False
        self._turn: TurnWatch | None = None
        self._moved = anyio.Event()
        """Set by progress: the timer re-arms."""
        self._queue: deque[rq.ReportStuck] = deque()
        self._sending = False

    def shown(self) -> list[StuckSignal | HiveSignal]:
        """Every active signal: the turn's, then hive-core's (the page's badge)."""
        return [*self.active, *self.hive]

    def hive_says(self, signals: list[HiveSignal]) -> None:
        """hive-core's signals for this agent, whole."""
        if signals != self.hive:
            self.hive = signals
            self._on_change(self.shown())

    async def load_limits(self) -> Limits:
        """Ask hive-core for the limits (`watch_limits`); when it cannot say (an older
        hive-core, an error, no answer in time), keep what is known, hive-core's defaults at
        first, and log that once."""
        problem = ""
        try:
            with anyio.fail_after(REPORT_WAIT):
                async with HiveClient(self._socket) as core:
                    got = await core.call(rq.WatchLimitsQuery(cmd="watch_limits"), rs.WatchLimits)
        except (ClientError, TimeoutError, ValueError) as exc:  # ValueError: a garbled answer
            problem = why(exc)
        except Exception:
            logger.exception("asking hive-core for the stuck limits failed")
            problem = "the question failed"
        else:
            if got.no_progress_seconds > 0 and got.repeat >= 2 and got.burn_tokens >= 1:
                self.limits = Limits(got.no_progress_seconds, got.repeat, got.burn_tokens)
                return self.limits
            problem = f"unusable limits {got.no_progress_seconds}, {got.repeat}, {got.burn_tokens}"
        if not self._told_fallback:
            self._told_fallback = True
            logger.warning("hive-core gave no stuck limits (%s); using %s", problem, self.limits)
        return self.limits

    @contextlib.asynccontextmanager
    async def turn(self, turn_id: str) -> AsyncIterator[TurnWatch]:
        """Watch the turn `turn_id` while the block runs, under the limits known at its
        start; its end clears every signal without a report."""
        watch = self._turn = TurnWatch(turn_id, self.limits, anyio.current_time())
        self._moved = anyio.Event()
        timer = anyio.CancelScope()
        self._tasks.start_soon(self._time, watch, timer)
        try:
            yield watch
        finally:
            timer.cancel()
            self._turn = None
            if self.active:
                self.active = []
                self._on_change(self.shown())

    def saw(self, event: LiveEvent) -> None:
        """An event of the running turn (ignored between turns)."""
        watch = self._turn
        if watch is None:
            return
        before = watch.last_progress
        self._send(watch.saw(event, anyio.current_time()))
        if watch.last_progress != before:
            self._moved.set()

    def spent(self, count: int) -> None:
        """Tokens the running turn spent (ignored between turns)."""
        if self._turn is not None:
            self._send(self._turn.spent(count))

    async def _time(self, watch: TurnWatch, scope: anyio.CancelScope) -> None:
        """`no_progress`'s timer: waits until the deadline, re-armed by progress; ends once
        the signal was raised (at most once a turn) or with the turn."""
        with scope:
            while (deadline := watch.deadline()) is not None:
                moved = self._moved
                with anyio.CancelScope(deadline=deadline):
                    await moved.wait()
                if moved.is_set():
                    self._moved = anyio.Event()
                    continue
                self._send(watch.check(anyio.current_time()))

    def _send(self, reports: list[rq.ReportStuck]) -> None:
        if not reports:
            return
        for report in reports:
            what = "stuck" if report.active else "no longer stuck"
            signal, detail = report.signal, report.detail
            logger.warning("turn %s %s (%s): %s", report.turn_id, what, signal, detail)
        active = list(self.active)
        for report in reports:
            if report.active and report.signal not in active:
                active.append(report.signal)
            elif not report.active and report.signal in active:
                active.remove(report.signal)
        if active != self.active:
            self.active = active
            self._on_change(self.shown())
        self._queue.extend(reports)
        if not self._sending:
            self._sending = True
            self._tasks.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while self._queue:
                report = self._queue.popleft()
                try:
                    with anyio.fail_after(REPORT_WAIT):
                        async with HiveClient(self._socket) as core:
                            await core.call(report, rs.Done)
                except (ClientError, TimeoutError, ValueError) as exc:
                    logger.warning("could not report %s to hive-core: %s", report.signal, why(exc))
                except Exception:
                    logger.exception("reporting %s to hive-core failed", report.signal)
        finally:
            self._sending = False
