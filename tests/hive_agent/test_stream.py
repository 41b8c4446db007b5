from __future__ import annotations

import json
from typing import Any

import pytest

from hive_agent.stream import TurnObserver
from hive_share import live


def _line(data: Any) -> bytes:
    return json.dumps(data).encode()


def _init(servers: list[dict[str, str]]) -> bytes:
    return _line(
        {
            "type": "system",
            "subtype": "init",
            "session_id": "b015721d-8dcc-44bf-90ea-8996babb07e6",
            "model": "claude-opus-5-5",
            "mcp_servers": servers,
        }
    )


def _assistant(content: list[dict[str, Any]], **message: Any) -> bytes:
    return _line(
        {
            "type": "assistant",
            "message": {"model": "claude-opus-5-5", **message, "content": content},
        }
    )


def _tool_result(content: Any, *, is_error: bool = False) -> bytes:
    block = {"type": "tool_result", "tool_use_id": "toolu_1", "content": content}
    if is_error:
        block["is_error"] = True
    return _line({"type": "user", "message": {"role": "user", "content": [block]}})


def test_the_init_line_captures_the_session_and_the_model() -> None:
    obs = TurnObserver()
    assert obs.feed(_init([{"name": "hyperhive", "status": "connected"}])) == []
    assert obs.session_id == "b015721d-8dcc-44bf-90ea-8996babb07e6"
    assert obs.model == "claude-opus-5-5"
    assert obs.mcp_servers == {"hyperhive": "connected"}


def test_mcp_servers_that_did_not_connect_are_reported_as_a_note() -> None:
    obs = TurnObserver()
    events = obs.feed(
        _init(
            [
                {"name": "hyperhive", "status": "connected"},
                {"name": "matrix", "status": "failed"},
                {"name": "slow", "status": "pending"},
            ]
        )
    )
    assert events == [live.Note(text="MCP servers not connected: matrix, slow")]


def test_assistant_text_becomes_a_text_event() -> None:
    obs = TurnObserver()
    assert obs.feed(_assistant([{"type": "text", "text": "Let me send it."}])) == [
        live.Text(text="Let me send it.")
    ]


def test_a_tool_use_becomes_a_tool_use_event_and_the_tool_state() -> None:
    obs = TurnObserver()
    block = {
        "type": "tool_use",
        "id": "toolu_003",
        "name": "mcp__hyperhive__send",
        "input": {"to": "bob", "body": "hello bob"},
    }
    assert obs.feed(_assistant([block])) == [
        live.ToolUse(
            id="toolu_003", name="mcp__hyperhive__send", input={"to": "bob", "body": "hello bob"}
        ),
        live.TurnStateChanged(state="tool"),
    ]


def test_tool_calls_are_counted_per_name() -> None:
    obs = TurnObserver()
    for name in ["mcp__hyperhive__send", "Bash", "mcp__hyperhive__send"]:
        obs.feed(_assistant([{"type": "tool_use", "id": "t", "name": name, "input": {}}]))
    assert obs.tool_calls == {"mcp__hyperhive__send": 2, "Bash": 1}


def test_a_tool_use_with_a_non_object_input_gets_an_empty_input() -> None:
    obs = TurnObserver()
    events = obs.feed(_assistant([{"type": "tool_use", "id": "t", "name": "X", "input": [1]}]))
    assert events[0] == live.ToolUse(id="t", name="X", input={})


def test_a_string_tool_result_becomes_a_tool_result_and_the_thinking_state() -> None:
    obs = TurnObserver()
    assert obs.feed(_tool_result('{"result":"queued message to bob"}')) == [
        live.ToolResult(tool_use_id="toolu_1", content='{"result":"queued message to bob"}'),
        live.TurnStateChanged(state="thinking"),
    ]


def test_a_list_tool_result_joins_its_text_blocks() -> None:
    obs = TurnObserver()
    content = [{"type": "text", "text": "one"}, {"type": "image"}, {"type": "text", "text": "two"}]
    events = obs.feed(_tool_result(content, is_error=True))
    assert events == [
        live.ToolResult(tool_use_id="toolu_1", content="one\n\ntwo", is_error=True),
        live.TurnStateChanged(state="thinking"),
    ]


def test_a_user_line_without_tool_results_yields_nothing() -> None:
    obs = TurnObserver()
    line = _line(
        {"type": "user", "message": {"role": "user", "content": "[Request interrupted by user]"}}
    )
    assert obs.feed(line) == []


def test_the_result_line_is_stored_and_yields_nothing() -> None:
    obs = TurnObserver()
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "sent it"}
    assert obs.feed(_line(result)) == []
    assert obs.result == result


def test_usage_reads_the_result_lines_usage() -> None:
    obs = TurnObserver()
    obs.feed(
        _line(
            {
                "type": "result",
                "usage": {
                    "input_tokens": 200,
                    "cache_creation_input_tokens": 40,
                    "cache_read_input_tokens": 60,
                    "output_tokens": 14,
                    "service_tier": "standard",
                },
            }
        )
    )
    assert obs.usage() == live.TokenUsage(
        input_tokens=200,
        output_tokens=14,
        cache_creation_input_tokens=40,
        cache_read_input_tokens=60,
    )


def test_usage_without_a_result_line_is_zero() -> None:
    assert TurnObserver().usage() == live.TokenUsage()


def test_compaction_start_and_end_change_the_state_and_keep_the_outcome() -> None:
    obs = TurnObserver()
    start = obs.feed(_line({"type": "system", "subtype": "status", "status": "compacting"}))
    assert start == [live.TurnStateChanged(state="compacting")]
    end = obs.feed(
        _line(
            {
                "type": "system",
                "subtype": "status",
                "status": None,
                "compact_result": "failed",
                "compact_error": "Compaction failed · could not be reduced",
            }
        )
    )
    assert end == [live.TurnStateChanged(state="thinking")]
    assert obs.compact_result == "failed"
    assert obs.compact_error == "Compaction failed · could not be reduced"


def test_an_api_retry_becomes_a_note() -> None:
    obs = TurnObserver()
    events = obs.feed(
        _line(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": 1,
                "max_retries": 2,
                "error": "overloaded",
                "error_status": 529,
            }
        )
    )
    assert events == [live.Note(text="API retry 1/2: overloaded (status 529)")]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "mystery", "x": [1, 2], "nested": {"a": None}},
        {"type": "system", "subtype": "brand_new", "y": 1},
        {"no_type": True},
    ],
)
def test_an_unknown_line_is_kept_as_raw_with_its_data(data: dict[str, Any]) -> None:
    obs = TurnObserver()
    events = obs.feed(_line(data))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, live.Raw)
    assert event.data == data
    expected_type = (
        f"system/{data['subtype']}" if data.get("type") == "system" else str(data.get("type"))
    )
    assert event.line_type == expected_type


@pytest.mark.parametrize(
    "kind", ["rate_limit_event", "stream_event", "control_response", "tool_progress"]
)
def test_known_quiet_lines_yield_nothing(kind: str) -> None:
    assert TurnObserver().feed(_line({"type": kind, "x": 1})) == []


@pytest.mark.parametrize(
    "line",
    [b"{not json", b"\xff\xfe\x00garbage", b"[" * 100_000, b'{"type": "assistant"'],
)
def test_a_malformed_line_becomes_a_note_and_is_counted(line: bytes) -> None:
    obs = TurnObserver()
    events = obs.feed(line)
    assert len(events) == 1
    assert isinstance(events[0], live.Note)
    assert "not JSON" in events[0].text
    assert obs.malformed_lines == 1


@pytest.mark.parametrize(("line", "name"), [(b"[1, 2]", "list"), (b'"text"', "str"), (b"3", "int")])
def test_json_that_is_not_an_object_becomes_a_note_and_is_counted(line: bytes, name: str) -> None:
    obs = TurnObserver()
    assert obs.feed(line) == [live.Note(text=f"claude printed a JSON {name}, not an object")]
    assert obs.malformed_lines == 1


@pytest.mark.parametrize("line", [b"", b"   ", b"\t \r"])
def test_a_blank_line_yields_nothing_and_is_not_malformed(line: bytes) -> None:
    obs = TurnObserver()
    assert obs.feed(line) == []
    assert obs.malformed_lines == 0


def test_context_tokens_come_from_the_last_assistant_lines_usage() -> None:
    obs = TurnObserver()
    obs.feed(
        _assistant(
            [{"type": "text", "text": "a"}],
            usage={
                "input_tokens": 1,
                "cache_creation_input_tokens": 2,
                "cache_read_input_tokens": 3,
                "output_tokens": 99,
            },
        )
    )
    assert obs.context_tokens == 6
    obs.feed(
        _assistant(
            [{"type": "text", "text": "b"}],
            usage={
                "input_tokens": 100,
                "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 30,
                "output_tokens": 1,
            },
        )
    )
    assert obs.context_tokens == 150


def test_a_synthetic_assistant_line_does_not_change_context_tokens() -> None:
    obs = TurnObserver()
    obs.feed(_assistant([], usage={"input_tokens": 100, "cache_read_input_tokens": 50}))
    obs.feed(
        _assistant(
            [{"type": "text", "text": "API Error: 500"}],
            model="<synthetic>",
            usage={"input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0},
        )
    )
    assert obs.context_tokens == 150


def test_a_whole_turn_yields_its_events_in_order() -> None:
    obs = TurnObserver()
    lines = [
        _init([{"name": "hyperhive", "status": "connected"}]),
        _assistant([{"type": "text", "text": "Let me send it."}]),
        _assistant([{"type": "tool_use", "id": "toolu_3", "name": "send", "input": {"to": "bob"}}]),
        _tool_result("ok"),
        _assistant([{"type": "text", "text": "sent it"}]),
        _line({"type": "result", "subtype": "success", "is_error": False, "result": "sent it"}),
    ]
    kinds = [e.kind for line in lines for e in obs.feed(line)]
    assert kinds == [
        "text",
        "tool_use",
        "turn_state_changed",
        "tool_result",
        "turn_state_changed",
        "text",
    ]
    assert obs.result is not None
    assert obs.result["result"] == "sent it"
