"""Classifying how a claude run ended, following the CLI's result table.

`subtype: success` is not enough: API errors arrive as success with
`is_error: true`.
"""

from __future__ import annotations

from typing import Any

from hive_share.live import ResultKind

RETRYABLE: frozenset[ResultKind] = frozenset(
    {"auth_error", "rate_limited", "overloaded", "unreachable", "api_error", "crashed", "error"}
)
"""Outcomes after which the wake items stay unacknowledged and the turn is retried later."""


def _api_error(result: dict[str, Any]) -> ResultKind:
    status = result.get("api_error_status")
    etype = str(result.get("api_error_type") or "")
    text = str(result.get("result") or "")
    if result.get("api_error") == "connection_failed" or "Connection refused" in text:
        return "unreachable"
    if (
        status in (401, 403)
        or etype in ("authentication_error", "permission_error")
        or "Not logged in" in text
        or "Invalid API key" in text
        or "Failed to authenticate" in text
    ):
        return "auth_error"
    if status == 429 or etype == "rate_limit_error":
        return "rate_limited"
    if status == 529 or etype == "overloaded_error" or "Overloaded" in text:
        return "overloaded"
    return "api_error"


def is_prompt_too_long(result: dict[str, Any]) -> bool:
    if result.get("terminal_reason") == "prompt_too_long":
        return True
    text = str(result.get("result") or "")
    return result.get("api_error_status") == 400 and text.startswith("Prompt is too long")


def classify(
    result: dict[str, Any] | None, returncode: int | None, cancelled: bool
) -> tuple[ResultKind, str]:
    """The kind of ending and a one-line detail for the operator."""
    if result is None:
        if cancelled:
            return "cancelled", "cancelled before claude reported a result"
        return "crashed", f"claude exited with {returncode} and no result line"
    subtype = result.get("subtype")
    text = str(result.get("result") or "")
    errors = result.get("errors") or []
    detail = text or "; ".join(str(e) for e in errors)
    if subtype == "error_during_execution" and str(result.get("terminal_reason", "")).startswith(
        "aborted"
    ):
        return "cancelled", detail or "interrupted"
    if cancelled:
        return "cancelled", detail or "interrupted"
    if not result.get("is_error"):
        return "success", text
    if is_prompt_too_long(result):
        return "prompt_too_long", detail
    if subtype == "error_max_turns" or result.get("terminal_reason") == "max_turns":
        return "max_turns", detail
    if result.get("terminal_reason") == "api_error" or subtype == "success":
        return _api_error(result), detail
    return "error", detail
