"""JSON-lines framing: one UTF-8 JSON object per line, 1 MiB cap, no NaN/Infinity."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI's blocking client decodes lines without asyncio or pydantic
    import asyncio

    from pydantic import BaseModel

MAX_LINE = 1024 * 1024
"""Longest accepted line in bytes, newline excluded. Longer lines close the connection."""

READER_LIMIT = MAX_LINE + 1
"""`asyncio` stream limit that lets a full-size line plus its newline through."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""Integers on the wire fit SQLite's 64-bit integers; anything wider is refused."""


class FrameError(ValueError):
    """A line that is not one JSON object; the connection stays usable."""


class FrameTooLong(FrameError):
    """A line over `MAX_LINE`; the peer must close the connection."""


def _reject_constant(token: str) -> Any:
    raise FrameError(f"non-finite number {token} is not allowed")


def _finite_float(token: str) -> float:
    value = float(token)
    if math.isinf(value):  # e.g. 1e400: valid JSON that overflows to infinity
        raise FrameError(f"number {token[:32]} overflows to infinity")
    return value


def _int64(token: str) -> int:
    # Checked on the digits first: int() of thousands of digits is slow, and past
    # 4,300 digits Python refuses it with a ValueError of its own.
    if len(token.lstrip("-")) > 19 or not INT64_MIN <= (value := int(token)) <= INT64_MAX:
        shown = token if len(token) <= 24 else token[:21] + "..."
        raise FrameError(f"integer {shown} is outside the 64-bit range")
    return value


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int64
)
"""Built once: `json.loads` with hooks builds a decoder per call, which costs more than
parsing a short request line."""


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line into a JSON object.

    Raises:
        FrameTooLong: the line exceeds `MAX_LINE`.
        FrameError: not UTF-8, not JSON, not an object, or holds NaN/Infinity or an
            integer outside the 64-bit range.
    """
    if len(line) > MAX_LINE:
        raise FrameTooLong(f"line of {len(line)} bytes exceeds the {MAX_LINE}-byte limit")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"line is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"malformed JSON ({exc.msg}, column {exc.colno})") from None
    except FrameError:
        raise
    except ValueError as exc:  # any other value json cannot turn into a Python object
        raise FrameError(f"malformed JSON ({str(exc)[:200]})") from None
    except RecursionError:
        raise FrameError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise FrameError(f"expected a JSON object, got {type(value).__name__}")
    return value


def encode(value: dict[str, Any]) -> bytes:
    """Serialise one object as a line (newline included).

    Raises:
        ValueError: the value holds NaN or Infinity.
    """
    return (
        json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8"
        )
        + b"\n"
    )


def encode_model(model: BaseModel) -> bytes:
    """Serialise a wire model as a line; pydantic writes non-finite floats as null."""
    return model.__pydantic_serializer__.to_json(model) + b"\n"


async def read_line(reader: asyncio.StreamReader) -> bytes | None:
    """Read one line without its newline; `None` at a clean end of stream.

    The reader must have been created with `limit=READER_LIMIT`.

    Raises:
        FrameTooLong: the line is over `MAX_LINE`.
        FrameError: the stream ended in the middle of a line.
    """
    import asyncio  # here, not at the top: see the TYPE_CHECKING import

    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("connection closed in the middle of a line") from None
    except asyncio.LimitOverrunError:
        raise FrameTooLong(f"line exceeds the {MAX_LINE}-byte limit") from None
    body = line[:-1]
    if len(body) > MAX_LINE:
        raise FrameTooLong(f"line of {len(body)} bytes exceeds the {MAX_LINE}-byte limit")
    return body
