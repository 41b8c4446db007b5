from __future__ import annotations

from typing import Any

import pytest

from hive_agent.classify import RETRYABLE, classify
from hive_share.live import ResultKind


def _api_error(**fields: Any) -> dict[str, Any]:
    """A result line as the CLI prints it for an API failure: `success`, but `is_error`."""
    return {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "terminal_reason": "api_error",
        "api_error_status": None,
        **fields,
    }


def test_a_normal_turn_is_success_with_the_final_text() -> None:
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "terminal_reason": "completed",
        "result": "sent it",
        "api_error_status": None,
    }
    assert classify(result, 0, cancelled=False) == ("success", "sent it")


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        pytest.param(
            {
                "api_error_status": 401,
                "api_error_type": "authentication_error",
                "result": "Invalid API key · Fix external API key",
            },
            "auth_error",
            id="401",
        ),
        pytest.param(
            {"api_error_status": 401, "result": "Failed to authenticate. API Error: 401 nope"},
            "auth_error",
            id="401-status-only",
        ),
        pytest.param(
            {
                "api_error_status": 403,
                "api_error_type": "permission_error",
                "result": "Failed to authenticate. API Error: 403 forbidden",
            },
            "auth_error",
            id="403",
        ),
        pytest.param(
            {"api_error_status": 403, "result": "API Error: 403"}, "auth_error", id="403-bare"
        ),
        pytest.param(
            {"result": "Not logged in · Please run /login"}, "auth_error", id="not-logged-in"
        ),
        pytest.param(
            {
                "api_error_status": 429,
                "api_error_type": "rate_limit_error",
                "result": "API Error: Request rejected (429) · slow down",
            },
            "rate_limited",
            id="429",
        ),
        pytest.param(
            {"api_error_status": 429, "result": "API Error: 429"}, "rate_limited", id="429-bare"
        ),
        pytest.param(
            {
                "api_error_status": 529,
                "api_error_type": "overloaded_error",
                "result": "API Error: Repeated 529 Overloaded errors.",
            },
            "overloaded",
            id="529",
        ),
        pytest.param(
            {"api_error_status": 529, "result": "API Error: 529"}, "overloaded", id="529-bare"
        ),
        pytest.param(
            {"api_error_type": "overloaded_error", "result": "API Error: mid-stream"},
            "overloaded",
            id="overloaded_error-type-without-status",
        ),
        pytest.param(
            {
                "api_error": "connection_failed",
                "result": "API Error: Connection refused — a firewall or proxy may be blocking "
                "it (ECONNREFUSED)",
            },
            "unreachable",
            id="connection_failed",
        ),
        pytest.param(
            {"api_error": "connection_failed", "result": "API Error: something else"},
            "unreachable",
            id="connection_failed-marker-only",
        ),
        pytest.param(
            {
                "api_error_status": 500,
                "api_error_type": "api_error",
                "result": "API Error: 500 boom. This is a server-side issue, usually temporary",
            },
            "api_error",
            id="500",
        ),
        pytest.param(
            {
                "api_error_status": 404,
                "api_error_type": "not_found_error",
                "result": "There's an issue with the selected model (x).",
            },
            "api_error",
            id="404",
        ),
        pytest.param(
            {
                "api_error_status": 400,
                "api_error_type": "invalid_request_error",
                "result": "API Error: 400 bad request",
            },
            "api_error",
            id="generic-400",
        ),
    ],
)
def test_an_api_error_reported_as_success_with_is_error_is_classified_by_its_markers(
    fields: dict[str, Any], kind: ResultKind
) -> None:
    result = _api_error(**fields)
    assert classify(result, 1, cancelled=False) == (kind, result["result"])


def test_prompt_too_long_is_recognised_by_its_terminal_reason() -> None:
    result = _api_error(
        terminal_reason="prompt_too_long", api_error_status=400, result="Prompt is too long"
    )
    assert classify(result, 1, cancelled=False) == ("prompt_too_long", "Prompt is too long")


def test_prompt_too_long_is_recognised_by_status_400_and_its_text_under_an_api_error() -> None:
    result = _api_error(api_error_status=400, result="Prompt is too long: 1200000 tokens > 1000000")
    kind, detail = classify(result, 1, cancelled=False)
    assert kind == "prompt_too_long"
    assert detail.startswith("Prompt is too long")


def test_the_prompt_too_long_text_without_status_400_is_an_ordinary_api_error() -> None:
    result = _api_error(api_error_status=500, result="Prompt is too long, said the server")
    assert classify(result, 1, cancelled=False)[0] == "api_error"


def test_hitting_max_turns_is_max_turns_with_the_errors_as_detail() -> None:
    result = {
        "type": "result",
        "subtype": "error_max_turns",
        "is_error": True,
        "terminal_reason": "max_turns",
        "errors": ["Reached maximum number of turns (3)", "second"],
    }
    assert classify(result, 1, cancelled=False) == (
        "max_turns",
        "Reached maximum number of turns (3); second",
    )


@pytest.mark.parametrize("reason", ["aborted_streaming", "aborted_tools"])
def test_an_interrupted_run_is_cancelled_even_without_our_cancel_flag(reason: str) -> None:
    result = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "terminal_reason": reason,
        "errors": ["Request was aborted."],
    }
    assert classify(result, 0, cancelled=False) == ("cancelled", "Request was aborted.")


def test_an_interrupted_run_without_any_text_says_interrupted() -> None:
    result = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "terminal_reason": "aborted_streaming",
    }
    assert classify(result, 0, cancelled=False) == ("cancelled", "interrupted")


def test_an_unknown_resume_id_is_a_generic_error() -> None:
    result = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "terminal_reason": None,
        "errors": ["No conversation found with session ID: abc"],
    }
    assert classify(result, 1, cancelled=False) == (
        "error",
        "No conversation found with session ID: abc",
    )


def test_a_successful_compact_is_success() -> None:
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "",
        "local_command": "compact",
        "num_turns": 0,
    }
    assert classify(result, 0, cancelled=False) == ("success", "")


def test_a_failed_compact_is_still_success_at_the_result_level_with_its_error_text() -> None:
    # The failure is visible only in the preceding system/status line (compact_result).
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Compaction failed · conversation could not be reduced",
        "local_command": "compact",
    }
    assert classify(result, 0, cancelled=False) == (
        "success",
        "Compaction failed · conversation could not be reduced",
    )


def test_no_result_line_after_our_cancel_is_cancelled() -> None:
    kind, _ = classify(None, -2, cancelled=True)
    assert kind == "cancelled"


def test_no_result_line_without_a_cancel_is_a_crash_naming_the_exit_code() -> None:
    kind, detail = classify(None, 143, cancelled=False)
    assert kind == "crashed"
    assert "143" in detail


def test_a_successful_result_after_our_cancel_is_cancelled() -> None:
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "done"}
    assert classify(result, 0, cancelled=True) == ("cancelled", "done")


@pytest.mark.parametrize(
    "kind",
    ["auth_error", "rate_limited", "overloaded", "unreachable", "api_error", "crashed", "error"],
)
def test_api_ish_failures_are_retryable(kind: ResultKind) -> None:
    assert kind in RETRYABLE


@pytest.mark.parametrize("kind", ["success", "cancelled", "max_turns", "prompt_too_long"])
def test_endings_the_turn_settles_are_not_retryable(kind: ResultKind) -> None:
    assert kind not in RETRYABLE
