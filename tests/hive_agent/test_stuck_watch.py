"""The stuck watch: each signal raised at its threshold and not before, once per turn;
`no_progress` cleared by progress; a changing call preventing `burn`; a repeated error
counted only in a row; the reports and the limits on a stand-in hive-core socket."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hive_agent.stream import TurnObserver
from hive_agent.stuck_watch import (
    CHANGING_HIVE_TOOLS,
    DEFAULT_LIMITS,
    HIVE_TOOLS,
    Limits,
    StuckWatch,
    TurnWatch,
    changes_something,
)
from hive_share import live
from hive_share import requests as rq
from hive_share import responses as rs
from tests.hive_agent.core_standin import BOUND, StandInCore, refuse, standing_in

T0 = 1000.0
LIMITS = Limits(no_progress_seconds=600.0, repeat=5, burn_tokens=1_000_000)


def _watch(limits: Limits = LIMITS) -> TurnWatch:
    return TurnWatch("t-1", limits, T0)


def _stuck(signal: Any, detail: str, active: bool = True) -> rq.ReportStuck:
    return rq.ReportStuck(cmd="stuck", signal=signal, turn_id="t-1", detail=detail, active=active)


class _Calls:
    """Feeds a watch tool calls and their results, each with its own tool-use id."""

    def __init__(self, watch: TurnWatch) -> None:
        self.watch = watch
        self.n = 0

    def call(self, name: str, tool_input: dict[str, Any], now: float = T0) -> list[Any]:
        self.n += 1
        return self.watch.saw(live.ToolUse(id=f"toolu_{self.n}", name=name, input=tool_input), now)

    def result(self, content: str, *, is_error: bool = False) -> list[Any]:
        event = live.ToolResult(tool_use_id=f"toolu_{self.n}", content=content, is_error=is_error)
        return self.watch.saw(event, T0)

    def both(self, name: str, tool_input: dict[str, Any], content: str, **kw: Any) -> list[Any]:
        return self.call(name, tool_input) + self.result(content, **kw)


# -- no_progress ------------------------------------------------------------------------


def test_no_progress_is_raised_at_the_limit_and_not_before_and_once() -> None:
    watch = _watch()
    assert watch.deadline() == T0 + 600
    assert watch.check(T0 + 599.999) == []
    assert watch.check(T0 + 600) == [_stuck("no_progress", "no tool call or text for 10 min")]
    assert watch.check(T0 + 6000) == []
    assert watch.deadline() is None


def test_a_tool_call_or_text_moves_the_no_progress_deadline() -> None:
    watch = _watch()
    watch.saw(live.ToolUse(id="toolu_1", name="Read", input={"path": "a"}), T0 + 500)
    assert watch.check(T0 + 1000) == []
    watch.saw(live.Text(text="thinking aloud"), T0 + 1050)
    assert watch.deadline() == T0 + 1650
    watch.saw(live.Text(text="  \n"), T0 + 1600)  # blank text is no progress
    watch.saw(live.ToolResult(tool_use_id="toolu_1", content="x"), T0 + 1600)  # nor a result
    assert watch.check(T0 + 1650) == [_stuck("no_progress", "no tool call or text for 10 min")]


def test_progress_after_no_progress_clears_it_once_and_it_never_comes_back() -> None:
    watch = _watch()
    watch.check(T0 + 600)
    assert watch.saw(live.Text(text="back"), T0 + 700) == [
        _stuck("no_progress", "text again", active=False)
    ]
    assert watch.saw(live.Text(text="more"), T0 + 701) == []
    assert watch.check(T0 + 99_999) == []


# -- repetition -------------------------------------------------------------------------


def test_the_same_call_is_raised_at_the_repeat_count_and_once() -> None:
    calls = _Calls(_watch())
    for _ in range(4):
        assert calls.call("Bash", {"command": "ls"}) == []
    assert calls.call("Bash", {"command": "ls"}) == [
        _stuck("repetition", 'Bash {"command":"ls"} called 5 times')
    ]
    assert calls.call("Bash", {"command": "ls"}) == []


def test_the_same_call_is_its_tool_and_its_input_in_any_key_order() -> None:
    calls = _Calls(_watch())
    for n in range(4):
        calls.call("Bash", {"command": "ls", "timeout": n})  # another input each time
        calls.call("Read", {"command": "ls"})  # another tool
    calls.call("Grep", {"pattern": "x", "path": "/"})
    for _ in range(3):
        assert calls.call("Grep", {"path": "/", "pattern": "x"}) == []
    assert calls.call("Grep", {"pattern": "x", "path": "/"}) == [
        _stuck("repetition", 'Grep {"path":"/","pattern":"x"} called 5 times')
    ]


def test_a_long_call_is_cut_to_the_detail_limit() -> None:
    calls = _Calls(_watch())
    for _ in range(5):
        reports = calls.call("Write", {"content": "x" * 5000})
    (report,) = reports
    assert len(report.detail) == 500
    assert report.detail.startswith('Write {"content":"xxx')
    assert report.detail.endswith("… called 5 times")


def test_a_repeated_error_counts_only_in_a_row() -> None:
    calls = _Calls(_watch())
    for n in range(4):
        assert calls.both("Bash", {"command": f"make {n}"}, "boom", is_error=True) == []
    calls.both("Bash", {"command": "true"}, "", is_error=False)  # the row is broken
    for n in range(4):
        assert calls.both("Bash", {"command": f"again {n}"}, "boom", is_error=True) == []
    calls.both("Bash", {"command": "x"}, "another error", is_error=True)  # and again
    calls.both("Read", {"path": "x"}, "boom", is_error=True)  # same text, another tool
    for n in range(4):
        assert calls.both("Bash", {"command": f"third {n}"}, "boom", is_error=True) == []
    assert calls.both("Bash", {"command": "last"}, "boom", is_error=True) == [
        _stuck("repetition", "Bash failed 5 times in a row: boom")
    ]
    assert calls.both("Bash", {"command": "later"}, "boom", is_error=True) == []


def test_a_repeated_errors_text_is_one_line_in_the_detail() -> None:
    calls = _Calls(_watch(Limits(600.0, 2, 10**6)))
    calls.both("Bash", {"command": "a"}, "Exit code 1\n  no such file", is_error=True)
    assert calls.both("Bash", {"command": "b"}, "Exit code 1\n  no such file", is_error=True) == [
        _stuck("repetition", "Bash failed 2 times in a row: Exit code 1 no such file")
    ]


# -- burn -------------------------------------------------------------------------------


def test_burn_is_raised_at_the_limit_and_not_before_and_once() -> None:
    watch = _watch()
    assert watch.spent(999_999) == []
    assert watch.spent(1) == [_stuck("burn", "1M tokens, nothing written, run or sent")]
    assert watch.spent(5_000_000) == []


@pytest.mark.parametrize(
    ("tool", "is_error"),
    [
        ("Write", False),
        ("Edit", False),
        ("MultiEdit", False),
        ("NotebookEdit", False),
        ("Bash", False),
        ("mcp__hyperhive__send", False),
        ("mcp__hyperhive__answer", False),
        ("mcp__hyperhive__ask", False),
        ("mcp__hyperhive__remind", False),
        ("mcp__hyperhive__request_spawn", False),
        ("mcp__hyperhive__request_apply_commit", False),
        ("mcp__hyperhive__request_init_config", False),
    ],
)
def test_a_call_that_changed_something_prevents_burn(tool: str, is_error: bool) -> None:
    calls = _Calls(_watch())
    calls.watch.spent(900_000)
    calls.both(tool, {"x": 1}, "ok", is_error=is_error)
    assert calls.watch.spent(5_000_000) == []


@pytest.mark.parametrize(
    ("tool", "is_error"),
    [
        ("Write", True),
        ("Bash", True),
        ("mcp__hyperhive__send", True),
        ("Read", False),
        ("Grep", False),
        ("WebFetch", False),
        ("mcp__hyperhive__recv", False),
        ("mcp__hyperhive__list_reminders", False),
        ("mcp__other__send", False),
    ],
)
def test_a_call_that_changed_nothing_does_not_prevent_burn(tool: str, is_error: bool) -> None:
    calls = _Calls(_watch())
    calls.both(tool, {"x": 1}, "result", is_error=is_error)
    assert calls.watch.spent(1_000_000) == [
        _stuck("burn", "1M tokens, nothing written, run or sent")
    ]


async def test_the_changing_hive_tools_are_tools_the_manager_has() -> None:
    from hive_agent.mcp_tools import Tools, build_server

    server = build_server("manager", Tools(Path("/nonexistent.sock"), lambda status: None))
    names = {tool.name for tool in await server.list_tools()}
    assert names >= CHANGING_HIVE_TOOLS
    assert {n for n in names if n.startswith("request_")} <= CHANGING_HIVE_TOOLS
    assert changes_something(f"{HIVE_TOOLS}send") and not changes_something("send")


def _assistant(message_id: str | None, blocks: list[dict[str, Any]], **usage: int) -> bytes:
    message: dict[str, Any] = {"model": "claude-opus-5-5", "content": blocks, "usage": usage}
    if message_id is not None:
        message["id"] = message_id
    return json.dumps({"type": "assistant", "message": message}).encode()


def test_the_observer_counts_a_messages_spend_once_and_no_cache_reads() -> None:
    heard: list[int] = []
    obs = TurnObserver(on_spent=heard.append)
    usage = {
        "input_tokens": 1000,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 50_000,
        "output_tokens": 1,
    }
    tool = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}
    obs.feed(_assistant("msg_1", [{"type": "text", "text": "running it"}], **usage))
    obs.feed(_assistant("msg_1", [tool], **usage))  # the same message's next block
    obs.feed(_assistant("msg_1", [], **{**usage, "output_tokens": 31}))  # its final figure
    obs.feed(_assistant("msg_2", [{"type": "text", "text": "done"}], input_tokens=2000))
    obs.feed(_assistant(None, [], input_tokens=7))  # no id: counted as it comes
    synthetic = json.loads(_assistant("msg_3", [], input_tokens=10**6))
    synthetic["message"]["model"] = "<synthetic>"
    obs.feed(json.dumps(synthetic).encode())
    assert heard == [1201, 30, 2000, 7]
    assert obs.spent_tokens == 3238


# -- reports and limits on the socket ---------------------------------------------------


@pytest.fixture
def sock() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hv", dir="/tmp") as root:  # short: socket paths
        yield Path(root) / "agent.sock"


def _stuck_seen(count: int) -> Any:
    return lambda core: len(core.seen("stuck")) >= count


async def _wait(core: StandInCore, count: int) -> list[dict[str, Any]]:
    await anyio.to_thread.run_sync(core.wait_for, _stuck_seen(count), f"{count} stuck reports")
    return core.seen("stuck")


async def test_the_timer_reports_no_progress_and_progress_clears_it(sock: Path) -> None:
    with standing_in(sock) as core:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                watch = StuckWatch(sock, tg)
                watch.limits = Limits(no_progress_seconds=0.05, repeat=5, burn_tokens=10**6)
                async with watch.turn("t-1"):
                    first = await _wait(core, 1)
                    watch.saw(live.ToolUse(id="toolu_1", name="Read", input={}))
                    both = await _wait(core, 2)
    assert first == [
        {"cmd": "stuck", "signal": "no_progress", "turn_id": "t-1",
         "detail": "no tool call or text for 0.05 s", "active": True},
    ]  # fmt: skip
    assert both[1] == {
        "cmd": "stuck", "signal": "no_progress", "turn_id": "t-1",
        "detail": "a tool call again", "active": False,
    }  # fmt: skip


async def test_progress_before_the_deadline_rearms_the_timer(sock: Path) -> None:
    with standing_in(sock) as core:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                watch = StuckWatch(sock, tg)
                watch.limits = Limits(no_progress_seconds=0.2, repeat=5, burn_tokens=10**6)
                async with watch.turn("t-1") as turn:
                    watch.saw(live.Text(text="still here"))
                    moved = turn.last_progress
                    (report,) = await _wait(core, 1)
                    seen = anyio.current_time()
    assert report["signal"] == "no_progress"
    assert seen >= moved + 0.2  # the deadline moved with the progress


async def test_the_active_signals_are_told_as_they_change_and_cleared_by_the_turns_end(
    sock: Path,
) -> None:
    told: list[list[str]] = []
    with standing_in(sock) as core:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                watch = StuckWatch(sock, tg, lambda signals: told.append(list(signals)))
                watch.limits = Limits(no_progress_seconds=0.05, repeat=2, burn_tokens=10**6)
                async with watch.turn("t-1"):
                    await _wait(core, 1)  # no progress
                    for n in range(2):
                        watch.saw(live.ToolUse(id=f"toolu_{n}", name="Read", input={"p": 1}))
                    await _wait(core, 3)  # progress again, then repetition
                    assert watch.active == ["repetition"]
                assert watch.active == []
    assert told == [["no_progress"], [], ["repetition"], []]


async def test_hive_cores_signals_join_the_turns_on_the_badge(sock: Path) -> None:
    told: list[list[str]] = []
    with standing_in(sock) as core:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                watch = StuckWatch(sock, tg, lambda signals: told.append(list(signals)))
                watch.limits = Limits(no_progress_seconds=600, repeat=2, burn_tokens=10**6)
                watch.hive_says(["silent"])
                watch.hive_says(["silent"])  # the same again: nothing new
                async with watch.turn("t-1"):
                    for n in range(2):
                        watch.saw(live.ToolUse(id=f"toolu_{n}", name="Read", input={}))
                    await _wait(core, 1)
                    assert watch.shown() == ["repetition", "silent"]
                watch.hive_says([])
    assert told == [["silent"], ["repetition", "silent"], ["silent"], []]


async def test_events_and_tokens_between_turns_are_not_watched(sock: Path) -> None:
    with standing_in(sock) as core:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                watch = StuckWatch(sock, tg)
                watch.limits = Limits(no_progress_seconds=600, repeat=2, burn_tokens=1000)
                for n in range(3):
                    watch.saw(live.ToolUse(id=f"toolu_{n}", name="Bash", input={"command": "ls"}))
                watch.spent(10_000)
                async with watch.turn("t-2") as turn:
                    watch.spent(10_000)
                assert turn.raised == {"burn"}
                watch.spent(10_000)
        reports = await _wait(core, 1)
    assert [(r["turn_id"], r["signal"]) for r in reports] == [("t-2", "burn")]


async def test_a_report_hive_core_cannot_take_is_logged_and_nothing_fails(
    sock: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(BOUND):  # nothing listens on `sock`
        async with anyio.create_task_group() as tg:
            watch = StuckWatch(sock, tg)
            async with watch.turn("t-3"):
                watch.spent(DEFAULT_LIMITS.burn_tokens)
    assert "could not report burn to hive-core" in caplog.text


async def test_the_limits_come_from_hive_core_and_apply_to_the_next_turn(sock: Path) -> None:
    answer = rs.WatchLimits(no_progress_seconds=60.0, repeat=3, burn_tokens=5000)
    with standing_in(sock, {"watch_limits": lambda req: answer}):
        async with anyio.create_task_group() as tg:
            watch = StuckWatch(sock, tg)
            assert watch.limits == DEFAULT_LIMITS
            assert await watch.load_limits() == Limits(60.0, 3, 5000)
            async with watch.turn("t-4") as turn:
                assert turn.limits == Limits(60.0, 3, 5000)
    # hive-core gone: what it said last still holds
    assert await watch.load_limits() == Limits(60.0, 3, 5000)


def test_the_defaults_are_hive_cores() -> None:
    from hive_core.settings import Settings

    fields = Settings.model_fields
    assert (
        Limits(
            no_progress_seconds=fields["stuck_no_progress_minutes"].default * 60,
            repeat=fields["stuck_repeat"].default,
            burn_tokens=fields["stuck_burn_tokens"].default,
        )
        == DEFAULT_LIMITS
        == Limits(600.0, 5, 2_000_000)
    )


@pytest.mark.parametrize("code", ["unknown_verb", "verb_not_allowed", "internal"])
async def test_a_hive_core_that_cannot_say_leaves_the_defaults_logged_once(
    sock: Path, code: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with standing_in(sock, {"watch_limits": refuse(code)}) as core:
        async with anyio.create_task_group() as tg:
            watch = StuckWatch(sock, tg)
            assert await watch.load_limits() == DEFAULT_LIMITS
            assert await watch.load_limits() == DEFAULT_LIMITS
    assert len(core.seen("watch_limits")) == 2
    assert caplog.text.count("hive-core gave no stuck limits") == 1
    assert code in caplog.text


async def test_unusable_limits_leave_the_defaults(sock: Path) -> None:
    answer = rs.WatchLimits(no_progress_seconds=0.0, repeat=1, burn_tokens=5000)
    with standing_in(sock, {"watch_limits": lambda req: answer}):
        async with anyio.create_task_group() as tg:
            assert await StuckWatch(sock, tg).load_limits() == DEFAULT_LIMITS
